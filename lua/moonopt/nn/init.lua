--- moonopt.nn (mo.nn): layers, containers and losses.
--
--   local nn = mo.nn
--   local model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
--   local loss_fn = nn.CrossEntropyLoss()
--   local out = model:forward(x)                    -- x {B, 784}
--   local loss = loss_fn:forward(out, y)            -- y: class indices 1..10
--   model:zero_grad()
--   model:backward(x, loss_fn:backward(out, y))     -- accumulates into every .grad
--   local params = model:parameters()               -- views into one flat buffer
--
-- Layers: Linear, ReLU, LeakyReLU, GELU, Tanh, Sigmoid, Softmax, Dropout,
-- LayerNorm, Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, BatchNorm1d, BatchNorm2d,
-- Flatten, Dropout2d (NCHW, PyTorch's names and shapes); container: Sequential; losses: MSELoss, CrossEntropyLoss,
-- BCEWithLogitsLoss. nn.Module and nn.class(name [, parent]) build custom
-- modules (docs/nn.md). nn.functional: the layers and losses as functions recorded
-- on the autograd tape (moonopt.nn.functional).
local base = require "moonopt.nn.module"
local act = require "moonopt.nn.activations"
local losses = require "moonopt.nn.losses"
local pooling = require "moonopt.nn.pooling"
local batchnorm = require "moonopt.nn.batchnorm"

return {
  Module = base.Module,
  class = base.class,
  Linear = require "moonopt.nn.linear",
  ReLU = act.ReLU,
  LeakyReLU = act.LeakyReLU,
  GELU = act.GELU,
  Tanh = act.Tanh,
  Sigmoid = act.Sigmoid,
  Softmax = act.Softmax,
  Dropout = require "moonopt.nn.dropout",
  LayerNorm = require "moonopt.nn.layernorm",
  Conv2d = require "moonopt.nn.conv",
  MaxPool2d = pooling.MaxPool2d,
  AvgPool2d = pooling.AvgPool2d,
  AdaptiveAvgPool2d = pooling.AdaptiveAvgPool2d,
  BatchNorm1d = batchnorm.BatchNorm1d,
  BatchNorm2d = batchnorm.BatchNorm2d,
  Flatten = require "moonopt.nn.flatten",
  Dropout2d = require "moonopt.nn.dropout2d",
  Sequential = require "moonopt.nn.sequential",
  MSELoss = losses.MSELoss,
  CrossEntropyLoss = losses.CrossEntropyLoss,
  BCEWithLogitsLoss = losses.BCEWithLogitsLoss,
  functional = require "moonopt.nn.functional",
}
