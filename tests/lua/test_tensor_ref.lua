-- Matmul and reductions against NumPy on non-trivial shapes, with transposed and
-- strided (narrowed) views. The inputs are float32 draws; the references were
-- computed in float64 from those float32 values by this script (/usr/bin/python3,
-- numpy; its output is pasted below as REF):
--[[
import textwrap
import numpy as np
rng = np.random.default_rng(20240601)
def mat(*shape):
    return rng.standard_normal(shape).astype(np.float32)
A = mat(6, 5); B = mat(5, 4); D = mat(6, 3); E = mat(4, 5); C0 = mat(6, 4); T = mat(3, 4, 5)
def lua(x, indent="    "):
    x = np.asarray(x)
    if x.ndim == 0:
        return repr(float(x))
    if x.ndim == 1:
        return "{" + textwrap.fill(", ".join("%.9g" % v for v in x), 96,
                                   subsequent_indent=indent + " ") + "}"
    inner = indent + "  "
    return "{\n" + "".join(inner + lua(r, inner) + ",\n" for r in x) + indent + "}"
f64 = lambda x: x.astype(np.float64)
out = {}
out["A"] = A; out["B"] = B; out["D"] = D; out["E"] = E; out["C0"] = C0; out["T"] = T
out["AB"] = f64(A) @ f64(B)
out["AtD"] = f64(A).T @ f64(D)
out["AEt"] = f64(A) @ f64(E).T
out["ab_beta"] = 0.5 * (f64(A) @ f64(B)) - 2.0 * f64(C0)       # alpha 0.5, beta -2
out["strided"] = f64(A)[:, 1:4] @ f64(B)[1:4, :]              # narrow(2,2,3) @ narrow(1,2,3)
out["BtAt"] = f64(B).T @ f64(A).T
a = f64(A)
out["sum"] = a.sum(); out["mean"] = a.mean(); out["max"] = a.max(); out["min"] = a.min()
out["argmax"] = np.argmax(A) + 1
out["sum1"] = a.sum(0); out["sum2"] = a.sum(1); out["mean1"] = a.mean(0); out["max2"] = a.max(1)
out["min1"] = a.min(0); out["argmax2"] = np.argmax(A, 1) + 1
out["t_sum1"] = a.T.sum(0)
out["nar_sum"] = a[1:5, 1:4].sum(); out["nar_max1"] = a[1:5, 1:4].max(0)
out["norm"] = np.sqrt((a * a).sum()); out["dotAA"] = (a * a).sum()
out["norm_many"] = np.sqrt((a * a).sum() + (f64(B) ** 2).sum())
t = f64(T)
out["T_sum2"] = t.sum(1); out["T_max3"] = t.max(2); out["T_argmax1"] = np.argmax(T, 0) + 1
for k, v in out.items():
    print("  %s = %s," % (k, lua(v)))
]]
local lu = require "luaunit"
local mo = require "moonopt"
local core = require "moonopt.core"

local REF = {
  A = {
      {0.647906184, 0.469320804, -0.64302063, -1.17825866, -0.144690409},
      {1.20345843, 1.33358383, 0.908301413, 0.346564442, 1.60003471},
      {1.23283982, -0.220317498, -1.06196463, -0.3645688, -0.420018554},
      {0.68750912, -1.89911592, -0.191368684, 1.67122209, -0.920283735},
      {-0.758463621, -0.0842607021, -1.41782105, -0.129612997, -0.015652895},
      {-0.00465518283, -0.988513887, -0.365830421, 0.653817534, -0.714550734},
    },
  B = {
      {0.547197461, 0.655512393, -1.42700064, -0.64530623},
      {0.655312657, 0.493494779, 0.179375201, -0.348617524},
      {0.108558804, 1.87477314, -0.221455485, 0.579649925},
      {-0.416748464, -0.198326051, 0.648026764, -0.929002285},
      {-0.242417455, -0.610307753, -0.858708143, 0.175753087},
    },
  D = {
      {1.2398231, 0.221407056, -0.381766558},
      {-1.45112002, 0.818956971, 0.210459083},
      {-0.631313622, 0.861435831, 1.57422876},
      {-1.63165319, 0.590327144, 0.845853388},
      {0.580528677, 1.60176194, 0.625378132},
      {-0.903532028, 3.80012774, 0.146192253},
    },
  E = {
      {1.48210704, 1.96610904, 0.881449699, -1.79810822, -1.7039721},
      {-0.677600503, 0.0340651534, -1.38882661, -0.937151968, -0.445089728},
      {-0.475107133, 0.188615277, 0.0725712478, -0.0387635864, -0.617708445},
      {-0.832396507, -1.91091633, 1.26748836, 0.195471331, 0.369517565},
    },
  C0 = {
      {-1.7173593, 0.751156747, -0.0880260542, 0.968344092},
      {-0.686173141, 0.998357117, 1.43939745, -0.169561312},
      {-0.304528356, -0.4002949, 0.135629803, 2.7399981},
      {-0.0475230105, 0.650615692, -1.48249018, -2.32772279},
      {0.160648093, -0.0986636057, 1.21911311, -2.3334198},
      {0.416071385, -1.75341189, 1.75793087, 0.760703921},
    },
  T = {
      {
        {-0.977145433, 0.729737043, 0.891049445, 0.117913827, 1.5439496},
        {0.974288642, -0.0788858235, -0.434833258, 0.735178649, -0.610222638},
        {-2.62284207, -0.369662374, -1.73991847, 1.01651561, 0.105230317},
        {0.585470855, 1.17306364, -0.0331440456, -0.0173381995, 0.447325587},
      },
      {
        {2.38866782, -0.208564937, -0.416718632, 0.128204346, 0.755471349},
        {-0.221922696, -0.27989608, 0.833687782, 2.04860163, 1.35771942},
        {-1.70992494, -0.0631854907, 1.36030424, -1.01880002, 0.239618808},
        {0.742947817, -1.08114624, -1.35364914, -0.787941337, 1.34288371},
      },
      {
        {-0.135621712, 0.249277934, -0.648214698, -0.0300468914, -1.97649312},
        {-0.437763959, 0.343426555, -1.59365869, -0.00225313939, -0.155220747},
        {0.822449744, -2.60402799, -0.140726998, 0.32827872, -0.106655188},
        {0.333245486, -1.23254967, 1.83082485, 1.01933825, 0.372414321},
      },
    },
  AB = {
      {1.1183919, -0.227214844, -1.33727389, 0.114736986},
      {1.09874133, 2.10461132, -2.82865222, -0.755761187},
      {0.668697682, -0.962882454, -1.43918181, -1.06945471},
      {-1.36247261, -0.615096493, 0.59390117, -1.60682752},
      {-0.566352877, -3.16159863, 1.31064662, -0.185364083},
      {-0.789304962, -0.870300219, 0.94762502, -0.597418775},
    },
  AtD = {
      {-3.27926236, 1.36433091, 2.05322656},
      {2.72871077, -4.00627498, -2.04891781},
      {-1.62515241, -4.08750817, -2.33715692},
      {-5.12642565, 2.97244271, 1.37697749},
      {-0.0979530715, -2.36721967, -1.16190136},
    },
  AEt = {
      {3.68139685, 1.63861772, -0.130918567, -2.53495023},
      {1.85667256, -3.06845103, -1.25610987, -1.7398759},
      {1.82919801, 1.16060902, -0.430773337, -2.17769805},
      {-4.3204891, -1.42135251, -0.195046155, 2.80082885},
      {-2.27979765, 2.6086066, 0.256258768, -1.0358337},
      {-2.23094685, 0.182868302, 0.205253829, 1.29292002},
    },
  ab_beta = {
      {3.99391456, -1.61592092, -0.492584839, -1.87931969},
      {1.92171695, -0.944408574, -4.29312102, -0.0387579701},
      {0.943405552, 0.319148573, -0.99085051, -6.01472356},
      {-0.586190284, -1.60877963, 3.26193095, 3.85203182},
      {-0.604472624, -1.3834721, -1.78290291, 4.57415756},
      {-1.22679525, 3.07167367, -3.04204924, -1.82011723},
    },
  strided = {
      {0.728783799, -0.740231055, -0.536958186, 0.558264668},
      {0.828088281, 2.292243, 0.262646573, -0.260373006},
      {-0.107728968, -2.02736482, -0.0405919432, -0.20007593},
      {-1.9617687, -1.62742354, 0.784721988, -1.00143089},
      {-0.155118044, -2.67396941, 0.214877276, -0.672054338},
      {-0.959977228, -1.30334454, 0.327391537, -0.474838296},
    },
  BtAt = {
      {1.1183919, 1.09874133, 0.668697682, -1.36247261, -0.566352877, -0.789304962},
      {-0.227214844, 2.10461132, -0.962882454, -0.615096493, -3.16159863, -0.870300219},
      {-1.33727389, -2.82865222, -1.43918181, 0.59390117, 1.31064662, 0.94762502},
      {0.114736986, -0.755761187, -1.06945471, -1.60682752, -0.185364083, -0.597418775},
    },
  sum = -0.7684106235392392,
  mean = -0.025613687451307973,
  max = 1.6712220907211304,
  min = -1.8991159200668335,
  argmax = 19.0,
  sum1 = {3.00859475, -1.38930337, -2.771704, 0.999163613, -0.615161613},
  sum2 = {-0.848742709, 5.39194283, -0.83402966, -0.652037129, -2.40581127, -1.41973269},
  mean1 = {0.501432458, -0.231550562, -0.461950667, 0.166527269, -0.102526935},
  max2 = {0.647906184, 1.60003471, 1.23283982, 1.67122209, -0.015652895, 0.653817534},
  min1 = {-0.758463621, -1.89911592, -1.41782105, -1.17825866, -0.920283735},
  argmax2 = {1, 5, 1, 4, 5, 4},
  t_sum1 = {-0.848742709, 5.39194283, -0.83402966, -0.652037129, -2.40581127, -1.41973269},
  nar_sum = -1.1093585044145584,
  nar_max1 = {1.33358383, 0.908301413, 1.67122209},
  norm = 4.961330849029961,
  dotAA = 24.61480379353636,
  norm_many = 5.935525308850386,
  T_sum2 = {
      {-2.04022801, 1.45425248, -1.31684633, 1.85226989, 1.48628287},
      {1.19976801, -1.63279275, 0.423624247, 0.370064616, 3.69569328},
      {0.582309559, -3.24387316, -0.55177553, 1.31531694, -1.86595473},
    },
  T_max3 = {
      {1.5439496, 0.974288642, 1.01651561, 1.17306364},
      {2.38866782, 2.04860163, 1.36030424, 1.34288371},
      {0.249277934, 0.343426555, 0.822449744, 1.83082485},
    },
  T_argmax1 = {
      {2, 1, 1, 2, 1},
      {1, 3, 2, 2, 2},
      {3, 2, 2, 1, 2},
      {2, 1, 3, 3, 2},
    },
}

-- |a - e| <= tol * max(1, |e|) elementwise over nested tables
local function near(actual, expected, tol, path)
  path = path or ""
  if type(expected) == "table" then
    lu.assertEquals(#actual, #expected, "length at " .. path)
    for i = 1, #expected do near(actual[i], expected[i], tol, path .. "[" .. i .. "]") end
    return
  end
  local scale = math.max(1, math.abs(expected))
  if math.abs(actual - expected) <= tol * scale then return end
  lu.fail(string.format("%s: got %.9g, expected %.9g", path, actual, expected))
end

local TOL = 2e-6

local TestTensorRef = {}

function TestTensorRef:setUp()
  self.A, self.B = mo.tensor(REF.A), mo.tensor(REF.B)
end

function TestTensorRef:test_inputs_round_trip()
  -- the printed values are the float32 inputs to 9 digits
  near(self.A:totable(), REF.A, 1e-8)
  near(mo.tensor(REF.T):totable(), REF.T, 1e-8)
end

function TestTensorRef:test_matmul_plain_and_transposed()
  near(mo.matmul(self.A, self.B):totable(), REF.AB, TOL)
  near(mo.matmul(self.A, mo.tensor(REF.D), {trans_a = true}):totable(), REF.AtD, TOL)
  near(mo.matmul(self.A, mo.tensor(REF.E), {trans_b = true}):totable(), REF.AEt, TOL)
  -- transposed views as operands instead of flags
  near(mo.matmul(self.B:t(), self.A:t()):totable(), REF.BtAt, TOL)
  near(mo.matmul(self.A:t():contiguous(), mo.tensor(REF.D), {trans_a = false}):totable(), REF.AtD, TOL)
  -- a transposed view with a trans flag cancels out
  near(mo.matmul(self.A:t(), self.B, {trans_a = true}):totable(), REF.AB, TOL)
end

function TestTensorRef:test_matmul_alpha_beta_out()
  local out = mo.tensor(REF.C0)
  mo.matmul(self.A, self.B, {alpha = 0.5, beta = -2, out = out})
  near(out:totable(), REF.ab_beta, TOL)
end

function TestTensorRef:test_matmul_strided_views()
  local a = self.A:narrow(2, 2, 3)                    -- {6, 3}, row stride 5
  local b = self.B:narrow(1, 2, 3)                    -- {3, 4}
  near(mo.matmul(a, b):totable(), REF.strided, TOL)
  -- the output may be a strided view too
  local big = mo.zeros(6, 9)
  local out = big:narrow(2, 3, 4)
  mo.matmul(a, b, {out = out})
  near(out:totable(), REF.strided, TOL)
  lu.assertEquals(big:narrow(2, 1, 2):sum():item(), 0)
  lu.assertEquals(big:narrow(2, 7, 3):sum():item(), 0)
end

function TestTensorRef:test_whole_reductions()
  local a = self.A
  near(a:sum():item(), REF.sum, 1e-6)
  near(a:mean():item(), REF.mean, 1e-6)
  near(a:max():item(), REF.max, 1e-8)
  near(a:min():item(), REF.min, 1e-8)
  lu.assertEquals(a:argmax():item(), math.tointeger(REF.argmax))
  near(a:norm():item(), REF.norm, 1e-6)
  near(a:dot(a):item(), REF.dotAA, 1e-6)
  near(core.norm_many{a, self.B}, REF.norm_many, 1e-6)
  -- the same through strided views
  near(a:t():sum(1):totable(), REF.t_sum1, 1e-6)
  local n = a:narrow(1, 2, 4):narrow(2, 2, 3)
  near(n:sum():item(), REF.nar_sum, 1e-6)
  near(n:max(1):totable(), REF.nar_max1, 1e-8)
end

function TestTensorRef:test_reductions_along_dims()
  local a = self.A
  near(a:sum(1):totable(), REF.sum1, 1e-6)
  near(a:sum(2):totable(), REF.sum2, 1e-6)
  near(a:mean(1):totable(), REF.mean1, 1e-6)
  near(a:max(2):totable(), REF.max2, 1e-8)
  near(a:min(1):totable(), REF.min1, 1e-8)
  near(a:argmax(2):totable(), REF.argmax2, 1e-8)
  local t = mo.tensor(REF.T)
  near(t:sum(2):totable(), REF.T_sum2, 1e-6)
  near(t:max(3):totable(), REF.T_max3, 1e-8)
  near(t:argmax(1):totable(), REF.T_argmax1, 1e-8)
end

return {TestTensorRef = TestTensorRef}
