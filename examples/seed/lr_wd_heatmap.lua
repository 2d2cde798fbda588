--- examples/seed/lr_wd_heatmap.lua - the seed's claim 5 (the AdamW paper's Figure 2): with
-- decoupled weight decay the good region of (learning rate, weight decay) becomes separable
-- (axis-aligned), where with L2 in Adam the two hyperparameters are coupled.
--
--   lua5.4 examples/seed/lr_wd_heatmap.lua [--out out/seed] [--train 5000] [--epochs 20]
--                                          [--hidden 256] [--seeds 3] [--threads 1] [--quick]
--                                          [--model mlp|cnn] [--test 10000]
--
-- Fashion-MNIST: the first --train training images and the first --test test images (all 10,000
-- by default); an MLP 784-hidden-10 (ReLU), or with --model cnn the CNN of the CNN main job
-- (claims.cnn; its own 4 x 5 grids, below, and its files named lr_wd_heatmap_cnn_*.svg); batch
-- 128; a cosine schedule from lr to 0 over the run; the same initialization and batch order in
-- every cell for a given seed; every cell is run with --seeds consecutive seeds from --seed on
-- and reported as mean ± std. Few images and many epochs, so that the model overfits and weight
-- decay has something to do. Grids of half-decade steps, 5 lrs x 6 wds for the MLP:
--   Adam + L2:  lr x wd, g <- g + wd * w            (mo.optim.Adam, weight_decay = wd)
--   AdamW:      lr x lambda, w <- w * (1 - eta_t lambda) with eta_t the schedule's factor,
--               the paper's convention (mo.optim.AdamW, weight_decay = lambda / lr)
-- The AdamW runs are drawn twice: over (lr, lambda), and over (lr, weight_decay = lambda / lr),
-- PyTorch's and moonopt's convention (the same runs; cells that no run covers are grey).
-- Prints the three grids of test error (mean ± std over the seeds), the best cell of the means,
-- each row's best column, and two measures of separability: the share of the grid's variation
-- that an additive row + column model leaves unexplained, and whether the good region (cells
-- within --slack of the best) fills its bounding box, i.e. whether it is an axis-aligned
-- rectangle. Writes lr_wd_heatmap_adam_l2.svg,
-- lr_wd_heatmap_adamw.svg and lr_wd_heatmap_adamw_pytorch.svg.
-- Needs Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist; `make deps`).
local mo = require "moonopt"
local common = require "seed.common"
local claims = require "seed.claims"

local NAME = "lr_wd_heatmap"
local o, given = common.args(NAME, arg, {
  train = {"int", 5000, "training images used"},
  epochs = {"int", 20, "epochs per run"},
  hidden = {"int", 256, "hidden units (--model mlp)"},
  model = {"string", "mlp", "mlp (784-hidden-10) or cnn (the CNN main job's network)"},
  test = {"int", 10000, "test images used"},
  batch = {"int", 128, "batch size"},
  slack = {"number", 0.005, "cells within this much test error of the best are 'good'"},
  seeds = {"int", 3, "seeds per cell (mean ± std)"},
  threads = {"int", 1, "threads of moonopt's pool (BLAS runs on it)"},
  data = {"string", "/usr/share/datasets/fashion-mnist", "Fashion-MNIST directory"},
})
if o.quick then
  o.train, o.epochs, o.hidden = 1000, 1, 32
  if not given.seeds then o.seeds = 1 end
end
if o.train < o.batch then common.die(NAME, "--train must be at least --batch") end
if o.epochs < 1 or o.hidden < 1 or o.seeds < 1 or o.test < 1 then
  common.die(NAME, "--epochs, --hidden, --seeds and --test must be at least 1")
end
if o.model ~= "mlp" and o.model ~= "cnn" then
  common.die(NAME, "--model must be mlp or cnn, got '" .. o.model .. "'")
end
local CNN = o.model == "cnn"
mo.set_num_threads(o.threads)

-- log10 of the axes: half decades, so lambda / lr falls on the same half-decade grid
local LOG_LR = {-4, -3.5, -3, -2.5, -2}
local LOG_L2 = {-4.5, -4, -3.5, -3, -2.5, -2}
local LOG_LAM = {-4.5, -4, -3.5, -3, -2.5, -2}
if CNN then
  -- 4 x 5 (a CNN run costs ~20 MLP runs): Adam's usual lrs for a CNN and the decays that
  -- range from harmless to harmful within a run's ~240 steps
  LOG_LR, LOG_L2, LOG_LAM = {-3.5, -3, -2.5, -2}, {-4, -3.5, -3, -2.5, -2}, {-4, -3.5, -3, -2.5, -2}
end
if o.quick then LOG_LR, LOG_L2, LOG_LAM = {-3, -2.5}, {-4, -3}, {-4, -3} end

local ok, train, test = pcall(mo.data.fashion_mnist, {dir = o.data, normalize = true,
                                                       n_train = o.train})
if not ok then common.die(NAME, tostring(train)) end
if o.quick then o.test = math.min(o.test, 1000) end
if o.test < mo.data.size(test) then test = mo.data.subset(test, 1, o.test) end
if CNN then claims.as_images(train); claims.as_images(test) end
local NET = CNN and claims.cnn or nil
local MODEL = CNN and "CNN (claims.cnn)" or ("MLP 784-%d-10"):format(o.hidden)
local FILE = CNN and "lr_wd_heatmap_cnn" or "lr_wd_heatmap"

local function label(l)
  -- 10^-3.5 -> "3.2e-4", 10^-3 -> "1e-3"
  local v = 10 ^ l
  local e = math.floor(l + 1e-9)
  local m = v / 10 ^ e
  if math.abs(m - 1) < 1e-9 then return ("1e%d"):format(e) end
  return ("%.2g"):format(m) .. ("e%d"):format(e)
end

local SEEDS = common.seed_list(o)

-- Two grids of the same shape: the mean and the standard deviation of the test error of one
-- cell over the seeds.
local function grid(kind, log_wd)
  local mean, std = {}, {}
  for i, llr in ipairs(LOG_LR) do
    mean[i], std[i] = {}, {}
    for j, lwd in ipairs(log_wd) do
      local errs = {}
      for k, seed in ipairs(SEEDS) do
        errs[k] = claims.fit_once{train = train, test = test, sizes = {784, o.hidden, 10},
                                  net = NET, kind = kind, lr = 10 ^ llr, wd = 10 ^ lwd, epochs = o.epochs,
                                  batch = o.batch, seed = seed}
      end
      mean[i][j], std[i][j] = common.mean_std(errs)
    end
  end
  return mean, std
end

print(("Fashion-MNIST: %d training images, %d test; %s; %d epochs, batch %d, cosine"
       .. " lr schedule; seeds %s; %s"):format(mo.data.size(train), mo.data.size(test), MODEL,
                                              o.epochs, o.batch, table.concat(SEEDS, ", "),
                                              common.blas_line()))
local t0 = mo.clock()
local l2, l2_sd = grid("l2", LOG_L2)
io.stderr:write(("  Adam+L2 grid done, %.0f s\n"):format(mo.clock() - t0))
local aw, aw_sd = grid("adamw", LOG_LAM)
io.stderr:write(("  AdamW grid done, %.0f s\n"):format(mo.clock() - t0))
local awpt, log_pt = claims.shear(aw, LOG_LR, LOG_LAM)
local awpt_sd = claims.shear(aw_sd, LOG_LR, LOG_LAM)

local function labels(logs)
  local out = {}
  for i, l in ipairs(logs) do out[i] = label(l) end
  return out
end

local function print_grid(title, values, sd, col_logs)
  print()
  print(title)
  local header = {"lr \\ wd"}
  for _, l in ipairs(col_logs) do header[#header + 1] = label(l) end
  local rows = {}
  for i, l in ipairs(LOG_LR) do
    local r = {label(l)}
    for j = 1, #col_logs do
      local v = values[i][j]
      r[#r + 1] = v == v and ("%.4f ± %.4f"):format(v, sd[i][j]) or "-"
    end
    rows[#rows + 1] = r
  end
  common.print_table(header, rows)
end

-- Separability: fit err_ij ~ a_i + b_j (least squares over the cells that exist, by
-- alternating row and column means) and report the residual's share of the variation around
-- the grand mean. An axis-aligned good region is additive (share near 0); a diagonal valley
-- is not. Errors are capped at 0.5 first, so a diverged cell does not dominate.
local function interaction_share(values)
  local cells = {}
  for i, row in ipairs(values) do
    for j, v in ipairs(row) do
      if v == v then cells[#cells + 1] = {i, j, math.min(v, 0.5)} end
    end
  end
  local mean = 0
  for _, c in ipairs(cells) do mean = mean + c[3] end
  mean = mean / #cells
  local a, b = {}, {}
  for _, c in ipairs(cells) do a[c[1]], b[c[2]] = 0, 0 end
  for _ = 1, 200 do
    local sa, na = {}, {}
    for _, c in ipairs(cells) do
      local i = c[1]
      sa[i] = (sa[i] or 0) + c[3] - b[c[2]]
      na[i] = (na[i] or 0) + 1
    end
    for i in pairs(a) do a[i] = sa[i] / na[i] end
    local sb, nb = {}, {}
    for _, c in ipairs(cells) do
      local j = c[2]
      sb[j] = (sb[j] or 0) + c[3] - a[c[1]]
      nb[j] = (nb[j] or 0) + 1
    end
    for j in pairs(b) do b[j] = sb[j] / nb[j] end
  end
  local ss_tot, ss_res = 0, 0
  for _, c in ipairs(cells) do
    ss_tot = ss_tot + (c[3] - mean) ^ 2
    ss_res = ss_res + (c[3] - a[c[1]] - b[c[2]]) ^ 2
  end
  return ss_tot > 0 and ss_res / ss_tot or 0
end

local function summary(title, values, sd, col_logs)
  local bi, bj, bv = 1, 1, math.huge
  for i, row in ipairs(values) do
    for j, v in ipairs(row) do
      if v == v and v < bv then bi, bj, bv = i, j, v end
    end
  end
  local best = claims.best_column_per_row(values)
  local parts = {}
  for i, b in ipairs(best) do
    parts[#parts + 1] = ("lr %s -> %s (%.4f)"):format(label(LOG_LR[i]), label(col_logs[b.col]),
                                                     b.err)
  end
  -- the run-to-run noise: the mean of the cells' standard deviations over the seeds
  local sd_sum, sd_n = 0, 0
  for _, row in ipairs(sd) do
    for _, v in ipairs(row) do
      if v == v then sd_sum, sd_n = sd_sum + v, sd_n + 1 end
    end
  end
  print(("%s: best mean error %.4f ± %.4f at lr %s, wd %s; unexplained by row + column: %.1f%%;"
         .. " mean std of a cell over %d seeds: %.4f"):format(
    title, bv, sd[bi][bj], label(LOG_LR[bi]), label(col_logs[bj]), 100 * interaction_share(values),
    #SEEDS, sd_n > 0 and sd_sum / sd_n or 0))
  print("  best wd per lr: " .. table.concat(parts, "; "))
  -- the good region: cells within --slack of the best. Separable means it is a rectangle: every
  -- (lr, wd) pair combining one of its lrs with one of its wds is good too (among run cells)
  local good, rows_in, cols_in = 0, {}, {}
  for i, row in ipairs(values) do
    for j, v in ipairs(row) do
      if v == v and v <= bv + o.slack then good, rows_in[i], cols_in[j] = good + 1, true, true end
    end
  end
  local box = 0
  for i in pairs(rows_in) do
    for j in pairs(cols_in) do
      if values[i][j] == values[i][j] then box = box + 1 end
    end
  end
  print(("  good region (error <= %.4f): %d cells; they fill %d of the %d run cells of their"
         .. " bounding box (%.0f%%)"):format(bv + o.slack, good, good, box, 100 * good / box))
end

print_grid("Adam + L2: test error (rows lr, columns L2 wd)", l2, l2_sd, LOG_L2)
print_grid("AdamW: test error (rows lr, columns lambda, the decay per step at the schedule's peak)",
           aw, aw_sd, LOG_LAM)
print_grid("AdamW, the same runs in PyTorch's convention (columns weight_decay = lambda / lr)",
           awpt, awpt_sd, log_pt)
print()
summary("Adam+L2", l2, l2_sd, LOG_L2)
summary("AdamW (lr, lambda)", aw, aw_sd, LOG_LAM)
summary("AdamW (lr, weight_decay)", awpt, awpt_sd, log_pt)
print(("%d runs in %.0f s"):format(#SEEDS * #LOG_LR * (#LOG_L2 + #LOG_LAM), mo.clock() - t0))

-- figures: one colour scale for all three, so they compare
local vmin, vmax = math.huge, -math.huge
for _, g in ipairs{l2, aw} do
  for _, row in ipairs(g) do
    for _, v in ipairs(row) do vmin, vmax = math.min(vmin, v), math.max(vmax, v) end
  end
end
vmax = math.min(vmax, vmin + 0.05) -- resolve the good region; much worse cells saturate
local function heat(title, values, col_logs, xlabel, file)
  common.save(mo.plot.heatmap{
    title = (CNN and "CNN, " or "") .. title, xlabel = xlabel, ylabel = "learning rate (peak)",
    xticks = labels(col_logs), yticks = labels(LOG_LR), values = values, origin = "lower",
    annotate = true, fmt = "%.3f", vmin = vmin, vmax = vmax,
    colorbar_label = ("test error, mean of %d seeds"):format(#SEEDS),
    width = 120 + 72 * #col_logs + 120,
  }, o.out, file)
end
heat("Adam + L2: test error", l2, LOG_L2, "L2 factor wd", FILE .. "_adam_l2.svg")
heat("AdamW: test error", aw, LOG_LAM, "decay per step lambda (paper)", FILE .. "_adamw.svg")
heat("AdamW, PyTorch convention: test error", awpt, log_pt, "weight_decay = lambda / lr",
     FILE .. "_adamw_pytorch.svg")
