-- The `lsr` dialect's library: Lua 5.1 names 5.4 dropped, and the data shapes and InfoTables
-- of the LSR's template API (docs/research/lsr-framework.md), written over the sandbox's own
-- functions so their limits hold. Runs once per VM, after the sandbox, before the template.

local t, s, m = table, string, math
local now_ms = __lsr_now_ms
__lsr_now_ms = nil
local type, pairs, ipairs, error, tostring, setmetatable = type, pairs, ipairs, error, tostring, setmetatable

-- Lua 5.1 names ------------------------------------------------------------------------------
unpack = t.unpack
t.getn = function(x) return #x end
t.maxn = function(x)
  local n = 0
  for k in pairs(x) do if type(k) == "number" and k > n then n = k end end
  return n
end
s.gfind = s.gmatch
m.mod = m.fmod
m.pow = function(x, y) return x ^ y end
m.log10 = function(x) return m.log(x, 10) end
m.ldexp = function(x, e) return x * 2.0 ^ e end

-- Lua 5.1 numbers are all doubles, written with "%.14g": tostring(10/2) is "5" there ("5.0" in
-- 5.4), and string.format's %d of 3.7 is 3 there (an error in 5.4). Both are given 5.1's way.
-- Concatenation converts inside the VM and still writes "5.0" (docs/lua.md).
local math_type, fmt, select = m.type, s.format, select
_ENV.tostring = function(v) -- the global; the local `tostring` stays 5.4's
  if math_type(v) == "float" then return fmt("%.14g", v) end
  return tostring(v)
end
local integral = { d = true, i = true, o = true, u = true, x = true, X = true, c = true }
-- Flag, width and precision bytes of a conversion: - + space # . and digits.
local spec_byte = { [45] = true, [43] = true, [32] = true, [35] = true, [46] = true }
for b = 48, 57 do spec_byte[b] = true end
s.format = function(f, ...)
  local n = select("#", ...)
  local floats = false
  for k = 1, n do
    if math_type((select(k, ...))) == "float" then floats = true break end
  end
  -- Only formats given a float are scanned (plain find, no pattern: calls stay light).
  if type(f) ~= "string" or not floats then return fmt(f, ...) end
  local args, i, pos = { ... }, 0, 1
  while true do
    local at = s.find(f, "%", pos, true)
    if not at then break end
    local j = at + 1
    local b = s.byte(f, j)
    while b and spec_byte[b] do j = j + 1; b = s.byte(f, j) end
    if not b then break end
    local conv = s.char(b)
    if conv ~= "%" then
      i = i + 1
      local v = args[i]
      if math_type(v) == "float" then
        if integral[conv] and v == v and v ~= m.huge and v ~= -m.huge then
          args[i] = m.tointeger(v >= 0 and m.floor(v) or m.ceil(v)) or v
        elseif conv == "s" then
          args[i] = fmt("%.14g", v)
        end
      end
    end
    pos = j + 1
  end
  return fmt(f, t.unpack(args, 1, n))
end

-- Data shapes --------------------------------------------------------------------------------
-- A shape's raw fields are what its JSON is: `name` and `fieldDefinitions` keyed by field name,
-- each `{name, baseType, description, ordinal, aspects}`; methods come from the metatable.

local Shape = {}
Shape.__index = Shape

-- A field definition, or nil and why.
local function field(def, ordinal, where)
  if type(def) ~= "table" then
    return nil, where .. ": a field must be a table {name=..., baseType=...}"
  end
  if type(def.name) ~= "string" or def.name == "" then
    return nil, where .. ": a field has no name"
  end
  if type(def.baseType) ~= "string" then
    return nil, where .. ": field " .. def.name .. " has no baseType"
  end
  return {
    name = def.name,
    baseType = s.upper(def.baseType),
    description = def.description or "",
    ordinal = def.ordinal or ordinal,
    aspects = def.aspects or {},
  }
end

local getmetatable = getmetatable
local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  -- Most copied tables (a shape's fields and aspects, rows) have none: skip the sandbox's
  -- `setmetatable` check for them.
  local mt = getmetatable(v)
  if mt == nil then return out end
  return setmetatable(out, mt)
end

-- A shape, or nil and why.
local function new_shape(name, defs, where)
  local shape = setmetatable({ name = name, fieldDefinitions = {} }, Shape)
  for i, def in ipairs(defs) do
    local f, why = field(def, i, where)
    if not f then return nil, why end
    shape.fieldDefinitions[f.name] = f
  end
  return shape
end

--- An independent copy (`DataShape.X:clone()`).
function Shape:clone() return copy(self) end

--- Adds a field (`ds:addField(name, baseType[, description[, aspects]])`).
function Shape:addField(name, baseType, description, aspects)
  local n = 0
  for _ in pairs(self.fieldDefinitions) do n = n + 1 end
  local f, why = field({ name = name, baseType = baseType, description = description,
    aspects = aspects }, n + 1, "addField")
  if not f then error(why, 2) end
  self.fieldDefinitions[f.name] = f
  return self
end

--- Shapes defined by `dataShapes.Name(field, ...)`, by name.
DataShape = {}

dataShapes = setmetatable({}, {
  __index = function(_, name)
    return function(...)
      local shape, why = new_shape(name, { ... }, "dataShapes." .. tostring(name))
      if not shape then error(why, 2) end
      DataShape[name] = shape
    end
  end,
})

tw_datashape = {
  --- A shape with one field (`createDataShape(fieldName, baseType[, description[, aspects]])`).
  createDataShape = function(name, baseType, description, aspects)
    local shape, why = new_shape(name, { { name = name, baseType = baseType,
      description = description, aspects = aspects } }, "createDataShape")
    if not shape then error(why, 2) end
    return shape
  end,
}

-- InfoTables ---------------------------------------------------------------------------------
-- Raw fields `dataShape` (the shape) and `rows`: converted to JSON, that is the InfoTable JSON
-- ThingWorx REST clients read, so a service may return the InfoTable itself.

local InfoTable = {}
InfoTable.__index = InfoTable

--- Adds a row; `true`, or `false` and why (an unknown field; a missing one takes the field's
--- `defaultValue` aspect when it has one).
function InfoTable:addRow(row)
  if type(row) ~= "table" then return false, "a row must be a table" end
  local fields = self.dataShape.fieldDefinitions
  local out = {}
  for k, v in pairs(row) do
    if not fields[k] then
      return false, "field " .. tostring(k) .. " is not in the data shape"
    end
    if type(v) == "table" and getmetatable(v) == InfoTable then v = v:toTable() end
    out[k] = v
  end
  for name, f in pairs(fields) do
    if out[name] == nil and f.aspects.defaultValue ~= nil then out[name] = f.aspects.defaultValue end
  end
  self.rows[#self.rows + 1] = out
  return true
end

--- The InfoTable as a plain table: `{dataShape = {fieldDefinitions = ...}, rows = {...}}`.
function InfoTable:toTable()
  return { dataShape = { fieldDefinitions = copy(self.dataShape.fieldDefinitions) }, rows = copy(self.rows) }
end

tw_infotable = {
  --- An empty InfoTable of shape `ds` (`createInfoTable(ds)`).
  createInfoTable = function(ds)
    if type(ds) ~= "table" or type(ds.fieldDefinitions) ~= "table" then
      error("createInfoTable: expected a data shape", 2)
    end
    return setmetatable({ dataShape = { fieldDefinitions = ds.fieldDefinitions }, rows = {} }, InfoTable)
  end,
}

-- The LSR serialises its worker threads with this mutex; an Edgeway thing runs one call at a
-- time, so it has nothing to do.
tw_mutex = { lock = function() end, unlock = function() end }
ps_mutex = tw_mutex

-- The thing (`me`) ------------------------------------------------------------------------------
-- Methods templates call on `me` (the loader makes this table `me`'s `__index`).

__lsr_thing = {}

--- `me:setProperty(name, headers, query, data)`: the value is `data.rows[1][name]`, else
--- `data[name]`, else `data.value`; returns 200, or 404/400 and why. The value is type-checked
--- and pushed by the read-back after the call, as any property change.
function __lsr_thing.setProperty(me, name, headers, query, data)
  local props = me.properties
  if type(props[name]) ~= "table" then return 404, "no property " .. tostring(name) end
  data = data or {}
  local value
  if type(data.rows) == "table" and type(data.rows[1]) == "table" then value = data.rows[1][name] end
  if value == nil then value = data[name] end
  if value == nil then value = data.value end
  if value == nil then
    return 400, "Request to set property " .. tostring(name) .. " did not contain valid data"
  end
  props[name].value = value
  return 200
end

--- `me:getProperty(name)`: 200 and the current value, or 404.
function __lsr_thing.getProperty(me, name)
  local pt = me.properties[name]
  if type(pt) ~= "table" then return 404, "no property " .. tostring(name) end
  return 200, pt.value
end

-- The platform, as templates reach it: `server.fireEvent` is added by the loader.
server = {}
tw_server = server

-- Logging as the LSR does it: `log.info(name, format, ...)` formats with `string.format` when
-- arguments follow a format with `%`; `log.force` always logs (as info).
do
  local raw = log
  local select, pcall, format = select, pcall, s.format
  local function printf(f)
    return function(name, fmt, ...)
      -- A message without `%` and more arguments is joined with spaces, as before.
      if select("#", ...) > 0 and type(fmt) == "string" and s.find(fmt, "%", 1, true) then
        local ok, msg = pcall(format, fmt, ...)
        if ok then return f(name, msg) end
      end
      return f(name, fmt, ...)
    end
  end
  log = {
    trace = printf(raw.trace), debug = printf(raw.debug), info = printf(raw.info),
    warn = printf(raw.warn), error = printf(raw.error), force = printf(raw.info),
  }
end

-- The `generator` property handler ------------------------------------------------------------
-- Properties with `handler = "generator"` get a new value on every scan of the thing, by
-- `functionType` (docs/research/lsr-framework.md describes the LSR's own): `ramp`, `random`,
-- `sin`, `cos`, `square` for NUMBER/INTEGER; `ramp`, `random` for DATETIME (bounds as
-- "Y-M-D h:m:s", steps in seconds); `random` for STRING; `ramp`, `random` for LOCATION; `user`
-- (or none) keeps what was written. The loader adds this as a task when a property uses it.

local generated = {}

local function when(text)
  if type(text) ~= "string" then return nil end
  local y, mo, d, h, mi, se = s.match(text, "(%d+)-(%d+)-(%d+) (%d+):(%d+):(%d+)")
  if not y then return nil end
  return os.time({ year = y, month = mo, day = d, hour = h, min = mi, sec = se })
end

local function int_between(lo, hi)
  lo, hi = m.ceil(lo), m.floor(hi)
  if hi < lo then return lo end
  return m.random(lo, hi)
end

local function next_value(pt, st)
  local kind = s.lower(pt.functionType or "user")
  local bt = s.upper(pt.baseType or "")
  if kind == "user" then return pt.value end
  local step = tonumber(pt.step) or 1
  if bt == "NUMBER" or bt == "INTEGER" then
    local lo, hi = tonumber(pt.minValue) or 0, tonumber(pt.maxValue) or 100
    st.v = st.v or lo
    if kind == "ramp" or kind == "sin" or kind == "cos" then
      if st.v < hi then st.v = st.v + step else st.v = lo end
      if kind == "sin" then return m.sin(m.pi / 180 * st.v) end
      if kind == "cos" then return m.cos(m.pi / 180 * st.v) end
      return st.v
    elseif kind == "random" then
      return int_between(lo, hi)
    elseif kind == "square" then
      if st.v > lo then st.v = lo else st.v = hi end
      return st.v
    end
  elseif bt == "DATETIME" then
    local hi = when(pt.maxValue) or os.time()
    local lo = when(pt.minValue) or hi - 86400
    if kind == "ramp" then
      st.v = st.v or lo
      if st.v < hi then st.v = st.v + step else st.v = lo end
      return st.v * 1000
    elseif kind == "random" then
      return (lo + int_between(0, m.abs(hi - lo))) * 1000
    end
  elseif bt == "STRING" and kind == "random" then
    local n = tonumber(pt.step) or m.random(100)
    local chars = {}
    for i = 1, m.min(n, 4096) do chars[i] = s.char(m.random(32, 126)) end
    return t.concat(chars)
  elseif bt == "LOCATION" then
    if kind == "ramp" then
      local lo, hi = tonumber(pt.minValue) or 0, tonumber(pt.maxValue) or 8440
      local v = type(pt.value) == "table" and pt.value or {}
      local e = tonumber(v.elevation)
      if not e or e >= hi then e = lo else e = e + 1 end
      return { latitude = v.latitude or 0, longitude = v.longitude or 0, elevation = e }
    elseif kind == "random" then
      return { latitude = m.random(-90, 90), longitude = m.random(-180, 180), elevation = m.random(0, 8840) }
    end
  end
  error("property " .. tostring(pt.name) .. ": generator functionType " .. kind
    .. " is not supported for " .. bt, 0)
end

-- A property's own `scanRate` (ms) spaces its values out: it gets a new value on the first scan
-- at least `scanRate` after its last one. Without one it changes on every scan of the thing.
function __lsr_generate(me)
  local now = now_ms()
  for name, pt in pairs(me.properties) do
    local st = generated[name] or {}
    local rate = type(pt) == "table" and tonumber(pt.scanRate)
    local due = not (rate and st.at and now - st.at < rate)
    if type(pt) == "table" and pt.handler == "generator" and due then
      st.at = now
      generated[name] = st
      pt.name = name
      pt.value = next_value(pt, st)
      -- `qualityPercent`: that share of values are GOOD, the rest `errorQualityStatus`.
      local good = tonumber(pt.qualityPercent)
      if good and m.random(1, 100) > good then
        pt.quality = pt.errorQualityStatus or "BAD"
      else
        pt.quality = "GOOD"
      end
    end
  end
end

-- Property defaults the LSR framework fills: `pushType` from `dataChangeType` when only that is
-- given, `pushThreshold` from `threshold`; without a value an INFOTABLE is an empty table of its
-- `dataShape` (fields and no rows), a LOCATION is all zeros.
function __lsr_defaults(props)
  for _, pt in pairs(props) do
    if type(pt) == "table" then
      if pt.pushType == nil then pt.pushType = pt.dataChangeType end
      if pt.pushThreshold == nil then pt.pushThreshold = pt.threshold end
    end
    if type(pt) == "table" and pt.value == nil and type(pt.baseType) == "string" then
      local bt = s.upper(pt.baseType)
      if bt == "INFOTABLE" then
        local ds = DataShape[pt.dataShape]
        if ds then
          pt.value = tw_infotable.createInfoTable(ds:clone()):toTable()
        else
          pt.value = { dataShape = { fieldDefinitions = {} }, rows = {} }
        end
      elseif bt == "LOCATION" then
        pt.value = { latitude = 0, longitude = 0, elevation = 0 }
      end
    end
  end
end

-- Refusals that help -------------------------------------------------------------------------
-- What LSR templates reach for and the sandbox does not have fails naming the function, at the
-- caller's line, with what to do instead.

do
  local UPSTREAM = "run the program in an upstream container behind the sidecar "
    .. "(EdgeGateway spec.upstream) and read it with a property handler \"http\""
  local INLINE = "put the code in the template itself; only the template file is loaded"
  local function refuse(name, instead)
    return function() error(name .. " is not available in the Edgeway sandbox: " .. instead, 2) end
  end
  local function refusing(prefix, instead)
    return setmetatable({}, { __index = function(_, k)
      error(prefix .. "." .. tostring(k) .. " is not available in the Edgeway sandbox: " .. instead, 2)
    end })
  end
  require = refuse("require", INLINE)
  loadstring = refuse("loadstring", INLINE)
  load = refuse("load", INLINE)
  dofile = refuse("dofile", INLINE)
  loadfile = refuse("loadfile", INLINE)
  io = refusing("io", UPSTREAM)
  package = refusing("package", INLINE)
  debug = refusing("debug", "there is no debugger in a gateway; log.debug(...) logs")
  setmetatable(os, { __index = function(_, k)
    error("os." .. tostring(k) .. " is not available in the Edgeway sandbox (os.time, os.clock and "
      .. "os.date are): " .. UPSTREAM, 2)
  end })
end

-- `tw_utils` (also `ps_utils`): the helpers templates call. `psleep` would hold the thing's VM
-- (one call at a time), so it is refused with what to do instead.
tw_utils = {
  --- true for true, "true"/"yes"/"on"/"1" (any case) and non-zero numbers.
  toboolean = function(v)
    if type(v) == "boolean" then return v end
    if type(v) == "number" then return v ~= 0 end
    if type(v) == "string" then
      local l = s.lower(v)
      return l == "true" or l == "yes" or l == "on" or l == "1"
    end
    return false
  end,
  --- The data as JSON text, as services may return it.
  encodeData = function(v) return json.encode(v) end,
  psleep = function()
    error("tw_utils.psleep is not available in the Edgeway sandbox: a thing runs one call at "
      .. "a time, so sleeping would stall it; use a task (tasks.X runs every scan)", 2)
  end,
}
ps_utils = tw_utils
