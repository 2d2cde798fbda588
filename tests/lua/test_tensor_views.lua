-- Views share memory with their source: view/reshape, narrow, transpose/t, select;
-- clone/contiguous/copy/fill and the in-place versus new semantics around them.
local lu = require "luaunit"
local mo = require "moonopt"

local function m23() return mo.tensor{{1, 2, 3}, {4, 5, 6}} end

local TestTensorViews = {}

function TestTensorViews.test_view_shares_memory()
  local a = m23()
  local v = a:view(3, 2)
  lu.assertEquals(v:totable(), {{1, 2}, {3, 4}, {5, 6}})
  lu.assertTrue(v:same_storage(a))
  v:set(3, 1, 50)
  lu.assertEquals(a:get(2, 2), 50)       -- set on the view is visible in the base
  a:set(1, 1, -1)
  lu.assertEquals(v:get(1, 1), -1)
  lu.assertEquals(a:view{6}:totable(), {-1, 2, 3, 4, 50, 6})
  lu.assertEquals(a:view(-1):shape(), {6})
  lu.assertEquals(a:view(2, -1, 1):shape(), {2, 3, 1})
  lu.assertEquals(a:view{-1, 2}:shape(), {3, 2})
  lu.assertEquals(mo.tensor(5):view(1, 1):totable(), {{5}})
  lu.assertEquals(mo.zeros(1, 1):view():dim(), 0)
end

function TestTensorViews.test_reshape_copies_only_when_needed()
  local a = m23()
  local r = a:reshape(6)
  lu.assertTrue(r:same_storage(a))
  local t = a:t()
  lu.assertFalse(t:is_contiguous())
  local rt = t:reshape(6)
  lu.assertFalse(rt:same_storage(a))
  lu.assertEquals(rt:totable(), {1, 4, 2, 5, 3, 6})
  lu.assertEquals(t:reshape{3, -1}:totable(), {{1, 4}, {2, 5}, {3, 6}})
end

function TestTensorViews.test_narrow()
  local a = mo.tensor{{1, 2, 3, 4}, {5, 6, 7, 8}, {9, 10, 11, 12}}
  local n = a:narrow(2, 2, 2)
  lu.assertEquals(n:totable(), {{2, 3}, {6, 7}, {10, 11}})
  lu.assertFalse(n:is_contiguous())
  n:fill(0)
  lu.assertEquals(a:totable(), {{1, 0, 0, 4}, {5, 0, 0, 8}, {9, 0, 0, 12}})
  lu.assertEquals(a:narrow(1, 3, 1):totable(), {{9, 0, 0, 12}})
  lu.assertEquals(a:narrow(1, 4, 0):shape(), {0, 4})  -- empty at the end is allowed
  lu.assertEquals(a:narrow(1, 2, 2):narrow(2, 4, 1):totable(), {{8}, {12}})
end

function TestTensorViews.test_transpose_and_t()
  local a = m23()
  local t = a:t()
  lu.assertEquals(t:shape(), {3, 2})
  lu.assertEquals(t:stride(), {1, 3})
  lu.assertEquals(t:totable(), {{1, 4}, {2, 5}, {3, 6}})
  t:set(3, 2, 60)
  lu.assertEquals(a:get(2, 3), 60)
  lu.assertEquals(t:t():totable(), a:totable())
  local c = mo.arange(24):view(2, 3, 4)
  local ct = c:transpose(1, 3)
  lu.assertEquals(ct:shape(), {4, 3, 2})
  lu.assertEquals(ct:get(4, 2, 1), c:get(1, 2, 4))
  lu.assertEquals(ct:get(2, 3, 2), c:get(2, 3, 2))
  lu.assertEquals(c:transpose(2, 2):totable(), c:totable())
  -- t() of a 1-d tensor is a view of itself
  local v = mo.arange(3)
  lu.assertEquals(v:t():totable(), {1, 2, 3})
  lu.assertTrue(v:t():same_storage(v))
end

function TestTensorViews.test_select()
  local a = m23()
  local row = a:select(1, 2)
  lu.assertEquals(row:totable(), {4, 5, 6})
  local col = a:select(2, 3)
  lu.assertEquals(col:totable(), {3, 6})
  col:set(1, 30)
  lu.assertEquals(a:get(1, 3), 30)
  local s = mo.arange(3):select(1, 2)
  lu.assertEquals(s:dim(), 0)
  lu.assertEquals(s:item(), 2)
end

function TestTensorViews.test_views_of_views_and_strided_math()
  local a = mo.arange(12):view(3, 4)
  local w = a:t():narrow(1, 2, 2)           -- {2, 3}: columns 2 and 3 of a, transposed
  lu.assertEquals(w:totable(), {{2, 6, 10}, {3, 7, 11}})
  lu.assertEquals(w:sum():item(), 39)
  lu.assertEquals(w:add(1):totable(), {{3, 7, 11}, {4, 8, 12}})
  w:mul_(10)
  lu.assertEquals(a:totable(), {{1, 20, 30, 4}, {5, 60, 70, 8}, {9, 100, 110, 12}})
end

function TestTensorViews.test_clone_and_contiguous()
  local a = m23()
  local c = a:clone()
  lu.assertFalse(c:same_storage(a))
  c:set(1, 1, 100)
  lu.assertEquals(a:get(1, 1), 1)
  lu.assertIs(a:contiguous(), a)
  local t = a:t()
  local tc = t:contiguous()
  lu.assertTrue(tc:is_contiguous())
  lu.assertFalse(tc:same_storage(a))
  lu.assertEquals(tc:totable(), t:totable())
  a.grad = mo.zeros(2, 3)
  lu.assertNil(a:clone().grad)            -- clone copies values, not the gradient
end

function TestTensorViews.test_fill_copy_in_place()
  local a = m23()
  lu.assertIs(a:fill(2), a)
  lu.assertEquals(a:totable(), {{2, 2, 2}, {2, 2, 2}})
  lu.assertIs(a:fill_(3), a)
  lu.assertIs(a:zero_(), a)
  lu.assertEquals(a:sum():item(), 0)
  local src = m23()
  lu.assertIs(a:copy(src), a)
  lu.assertEquals(a:totable(), src:totable())
  lu.assertFalse(a:same_storage(src))
  lu.assertIs(a:copy_(src:mul(2)), a)
  lu.assertEquals(a:get(2, 3), 12)
  -- copy from a strided view
  local b = mo.zeros(3, 2)
  b:copy(src:t())
  lu.assertEquals(b:totable(), {{1, 4}, {2, 5}, {3, 6}})
end

function TestTensorViews.test_copy_between_overlapping_views()
  -- dst and src overlap in one storage: the result is as if src was read first
  local a = mo.arange(6)
  a:narrow(1, 2, 5):copy(a:narrow(1, 1, 5))
  lu.assertEquals(a:totable(), {1, 1, 2, 3, 4, 5})
  local b = mo.arange(6)
  b:narrow(1, 1, 5):copy(b:narrow(1, 2, 5))
  lu.assertEquals(b:totable(), {2, 3, 4, 5, 6, 6})
  local m = mo.tensor{{1, 2}, {3, 4}}
  m:copy(m:t())
  lu.assertEquals(m:totable(), {{1, 3}, {2, 4}})
  local n = mo.tensor{{1, 2}, {3, 4}}
  n:add_(n:t())
  lu.assertEquals(n:totable(), {{2, 5}, {5, 8}})
  local p = mo.arange(4)
  p:narrow(1, 2, 3):addcmul_(1, p:narrow(1, 1, 3), p:narrow(1, 1, 3))
  lu.assertEquals(p:totable(), {1, 3, 7, 13})
end

function TestTensorViews.test_same_storage()
  local a, b = mo.zeros(2), mo.zeros(2)
  lu.assertFalse(a:same_storage(b))
  lu.assertTrue(a:same_storage(a:view(2)))
  lu.assertTrue(a:narrow(1, 2, 1):same_storage(a:narrow(1, 1, 1)))
end

return {TestTensorViews = TestTensorViews}
