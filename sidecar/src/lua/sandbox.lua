-- The sandbox prelude, run once per VM before any script: see GUARD_PRELUDE in sandbox.rs.
local guard, rep_check, flags = ...
local raw_pcall, raw_xpcall = pcall, xpcall
local raw_resume, raw_close, raw_wrap = coroutine.resume, coroutine.close, coroutine.wrap
local raw_yield, running, isyieldable = coroutine.yield, coroutine.running, coroutine.isyieldable
local error, tonumber = error, tonumber
local function offload()
    if flags.inline and running() == flags.outer and isyieldable() then raw_yield() end
end
local function offloading(f) return function(...) offload() return f(...) end end
-- Costs C cannot bound or slice: Lua called back from C (metamethods, comparators), long
-- inputs, and pattern matching (backtracking can be exponential even on short subjects).
local type, raw_getmetatable, rawlen, select = type, getmetatable, rawlen, select
local LONG = 4096
local function heavy(x)
    local t = type(x)
    if t == "string" then return #x > LONG end
    if t == "table" then return raw_getmetatable(x) ~= nil or rawlen(x) > LONG end
    return t == "userdata"
end
local function offloading_if_heavy(f)
    return function(x, ...)
        if heavy(x) then offload() end
        return f(x, ...)
    end
end
-- A pattern without magic characters (or a plain find) is a linear search; others backtrack.
local raw_find, MAGIC = string.find, "[%^%$%*%+%?%.%(%)%[%]%%%-]"
local function light_match(s, p, plain)
    if heavy(s) or type(p) ~= "string" or #p > LONG then return false end
    return plain or not raw_find(p, MAGIC)
end
local find, match, gsub = string.find, string.match, string.gsub
string.find = function(s, p, init, plain)
    if not light_match(s, p, plain) then offload() end
    return find(s, p, init, plain)
end
string.match = function(s, p, ...)
    if not light_match(s, p) then offload() end
    return match(s, p, ...)
end
string.gsub = function(s, p, repl, ...)
    -- A function or table replacement is Lua called back from C.
    if type(repl) ~= "string" or not light_match(s, p) then offload() end
    return gsub(s, p, repl, ...)
end
table.sort = offloading(table.sort)
for _, name in ipairs({ "upper", "lower", "reverse" }) do
    string[name] = offloading_if_heavy(string[name])
end
for _, name in ipairs({ "concat", "insert", "remove", "move", "unpack" }) do
    table[name] = offloading_if_heavy(table[name])
end
for _, name in ipairs({ "tostring", "pairs", "ipairs" }) do
    _ENV[name] = offloading_if_heavy(_ENV[name])
end
local format = string.format
string.format = function(...)
    for i = 1, select('#', ...) do
        if heavy((select(i, ...))) then offload() break end
    end
    return format(...)
end
local gmatch = string.gmatch
string.gmatch = function(s, p, ...)
    local next_match = gmatch(s, p, ...)
    if light_match(s, p) then return next_match end
    return function() offload() return next_match() end
end
local rep = string.rep
string.rep = function(s, n, sep)
    rep_check(s, n, sep)
    local unit = (type(s) == "string" and #s or 24) + (type(sep) == "string" and #sep or 0)
    if (tonumber(n) or 0) * unit > LONG then offload() end
    return rep(s, n, sep)
end
coroutine.yield = function(...)
    if running() == flags.outer then error("attempt to yield from outside a coroutine", 2) end
    return raw_yield(...)
end
coroutine.wrap = function(f)
    local co = raw_wrap(f)
    return function(...) offload() return co(...) end
end
-- Lua runs finalizers with hooks disabled, so a looping __gc could never be stopped; Lua only
-- honours __gc present when setmetatable is called, so refusing it here is sufficient.
local raw_setmetatable, rawget = setmetatable, rawget
setmetatable = function(t, mt)
    if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
        error("__gc metamethods are not allowed in the sandbox", 2)
    end
    return raw_setmetatable(t, mt)
end
local function checked(...) guard() return ... end
pcall = function(...) return checked(raw_pcall(...)) end
xpcall = function(...) offload() return checked(raw_xpcall(...)) end
coroutine.resume = function(...) offload() return checked(raw_resume(...)) end
coroutine.close = function(...) offload() return checked(raw_close(...)) end
