-- The sandbox prelude, run once per VM before any script: see GUARD_PRELUDE in sandbox.rs.
local guard, rep_check, charge, flags, strfns = ...
local raw_pcall, raw_xpcall, raw_setmetatable = pcall, xpcall, setmetatable
local raw_create, raw_resume, raw_close = coroutine.create, coroutine.resume, coroutine.close
local raw_yield, raw_running, raw_isyieldable = coroutine.yield, coroutine.running, coroutine.isyieldable
local error, type, select, rawget, rawlen, tonumber = error, type, select, rawget, rawlen, tonumber
local raw_getmetatable = getmetatable

-- Strings share one metatable. A script changing it (a looping `__tostring`, say) would run
-- Lua called from C where nothing below expects it, so scripts see none, as for userdata.
local string_mt = raw_getmetatable("")
string_mt.__metatable = false

-- Moving off the async worker: `offload()` yields the call's own Lua thread (only while the
-- call runs inline on a worker) and Rust resumes it off the worker.
local function offload()
    if flags.inline and raw_running() == flags.outer and raw_isyieldable() then raw_yield() end
end

-- What the hook cannot slice: Lua called back from C (metamethods of tables and userdata),
-- and long inputs to C loops that are more than linear (patterns, formats, ranges). Linear
-- loops over strings are bounded by the VM's memory, which Rust watches (see `offload.rs`).
local LONG = 4096
local function heavy(x)
    local t = type(x)
    if t == "string" then return #x > LONG end
    if t == "table" then return raw_getmetatable(x) ~= nil or rawlen(x) > LONG end
    return t == "userdata"
end
local function any_heavy(...)
    local n = select("#", ...)
    if n > 16 then return true end
    for i = 1, n do
        if heavy((select(i, ...))) then return true end
    end
    return false
end

-- Each wrapper tail-calls the library function through a local of the same name, so its
-- argument errors name it as plain Lua's do ("bad argument #1 to 'format'"); Rust moves the
-- position of errors raised here to the script's line (`offload::script_position`).
local format = string.format

-- Pattern functions run in Rust (`strfns.rs`): Lua's C matcher cannot be stopped, and a
-- backtracking pattern ran 10.7 s past a 1 s deadline. Their errors come back as
-- `false, message`; `checked` raises them at the caller's line (it is tail-called, so level 2
-- is the script), as plain Lua does.
local find, match, gmatch, gsub_string, search = strfns.find, strfns.match, strfns.gmatch, strfns.gsub, strfns.search
-- Lua's own `find`, only for the fixed set pattern MAGIC below over at most 64 bytes: linear.
local c_find = string.find
local function checked(first, ...)
    if first == false then error((...), 2) end
    return first, ...
end
local sub, concat, tostring, pack, unpack = string.sub, table.concat, tostring, table.pack, table.unpack
local tointeger = math.tointeger
-- gsub with a function or table replacement: the replacement is Lua code, so the loop is too,
-- over `search` (the next match not ending where the previous one did, as Lua's gsub skips).
-- Tail-called by the wrapper, so error level 2 is the script.
local function gsub_call(s, p, repl, n)
    local max = math.maxinteger
    if n ~= nil then
        max = tointeger(tonumber(n) or n)
        if max == nil then
            local why = tonumber(n) and "number has no integer representation"
                or "number expected, got " .. type(n)
            error("bad argument #4 to 'gsub' (" .. why .. ")", 2)
        end
    end
    local out, count, pos, anchored = {}, 0, 1, sub(p, 1, 1) == "^"
    local found = pack(search(s, p, 1, 0))
    while count < max do
        if found[1] == false then error(found[2], 2) end
        local start, stop = found[1], found[2]
        if start == nil then break end
        out[#out + 1] = sub(s, pos, start - 1)
        local v
        if type(repl) == "table" then v = repl[found[3]] else v = repl(unpack(found, 3, found.n)) end
        if not v then
            v = sub(s, start, stop - 1)
        elseif type(v) == "number" then
            v = tostring(v)
        elseif type(v) ~= "string" then
            error("invalid replacement value (a " .. type(v) .. ")", 2)
        end
        out[#out + 1] = v
        count, pos = count + 1, stop
        if anchored then break end
        found = pack(search(s, p, pos, pos))
    end
    out[#out + 1] = sub(s, pos)
    return concat(out), count
end

local MAGIC, SHORT = "[%^%$%*%+%?%.%(%)%[%]%%%-]", 64
local function light_match(s, p, plain)
    if type(s) ~= "string" or #s > LONG or type(p) ~= "string" or #p > SHORT then return false end
    return plain or not c_find(p, MAGIC)
end
-- Varargs, so the Rust side tells a missing argument ("no value") from nil, as Lua does.
string.find = function(...)
    local s, p, _, plain = ...
    if not light_match(s, p, plain) then offload() end
    return checked(find(...))
end
string.match = function(...)
    local s, p = ...
    if not light_match(s, p) then offload() end
    return checked(match(...))
end
string.gsub = function(...)
    local s, p, repl, n = ...
    local t = type(repl)
    if t == "string" or t == "number" then
        if not light_match(s, p) then offload() end
        return checked(gsub_string(...))
    end
    if t ~= "function" and t ~= "table" then
        local got = select("#", ...) < 3 and "no value" or t
        error("bad argument #3 to 'gsub' (string/function/table expected, got " .. got .. ")", 2)
    end
    offload()
    return gsub_call(s, p, repl, n)
end
string.gmatch = function(...)
    local s, p = ...
    local next_match, msg = gmatch(...)
    if next_match == false then error(msg, 2) end
    if light_match(s, p) then
        return function() return checked(next_match()) end
    end
    return function() offload() return checked(next_match()) end
end
string.format = function(...)
    -- `%s` calls `__tostring`; widths are bounded, long strings are copied.
    if any_heavy(...) then offload() end
    return format(...)
end

-- Table functions index through `__index`/`__newindex` from C; `unpack` and `concat` loop
-- over the range they are given, whatever the table's length.
local function span(t, i, j)
    local last = tonumber(j) or (type(t) == "table" and rawlen(t)) or 0
    return last - (tonumber(i) or 1)
end
local unpack, concat, insert, remove, sort = table.unpack, table.concat, table.insert, table.remove, table.sort
table.unpack = function(t, i, j)
    if heavy(t) or span(t, i, j) > LONG then offload() end
    return unpack(t, i, j)
end
table.concat = function(t, sep, i, j)
    if heavy(t) or heavy(sep) or span(t, i, j) > LONG then offload() end
    return concat(t, sep, i, j)
end
table.insert = function(...)
    if any_heavy(...) then offload() end
    return insert(...)
end
table.remove = function(...)
    if any_heavy(...) then offload() end
    return remove(...)
end
table.sort = function(...)
    -- A comparator, or n log n comparisons: Lua called back from C either way.
    offload()
    return sort(...)
end

-- `__tostring`/`__name`, `__lt` and `__index` called from C; `os.date` expands each
-- conversion of a format of any length.
local tostring, min, max, date, time = tostring, math.min, math.max, os.date, os.time
_ENV.tostring = function(...)
    if any_heavy(...) then offload() end
    return tostring(...)
end
math.min = function(...)
    if any_heavy(...) then offload() end
    return min(...)
end
math.max = function(...)
    if any_heavy(...) then offload() end
    return max(...)
end
os.date = function(...)
    if any_heavy(...) then offload() end
    return date(...)
end
os.time = function(...)
    if any_heavy(...) then offload() end
    return time(...)
end

-- C loops linear in a string argument: off the worker when it is long. Each wrapper
-- tail-calls through a local named like the function, which argument errors then name.
local function long(s) return type(s) == "string" and #s > LONG end
do
    local upper = string.upper
    string.upper = function(...)
        if long((...)) then offload() end
        return upper(...)
    end
end
do
    local lower = string.lower
    string.lower = function(...)
        if long((...)) then offload() end
        return lower(...)
    end
end
do
    local reverse = string.reverse
    string.reverse = function(...)
        if long((...)) then offload() end
        return reverse(...)
    end
end
do
    local byte = string.byte
    string.byte = function(...)
        if long((...)) then offload() end
        return byte(...)
    end
end
do
    local sub = string.sub
    string.sub = function(...)
        if long((...)) then offload() end
        return sub(...)
    end
end
do
    local len = utf8.len
    utf8.len = function(...)
        if long((...)) then offload() end
        return len(...)
    end
end
do
    local codepoint = utf8.codepoint
    utf8.codepoint = function(...)
        if long((...)) then offload() end
        return codepoint(...)
    end
end
do
    local offset = utf8.offset
    utf8.offset = function(...)
        if long((...)) then offload() end
        return offset(...)
    end
end
do
    local unpack, pack = string.unpack, string.pack
    string.unpack = function(...)
        local fmt, s = ...
        if long(fmt) or long(s) then offload() end
        return unpack(...)
    end
    string.pack = function(...)
        -- Counts in the format ("c100000") size the output, whatever the arguments.
        local fmt = ...
        if type(fmt) ~= "string" or #fmt > SHORT or find(fmt, "%d%d%d%d") then offload() end
        return pack(...)
    end
end
_ENV.tonumber = function(...)
    if long((...)) then offload() end
    return tonumber(...)
end

-- Strings do arithmetic through metamethods in C, which call the other operand's metamethod
-- from C (`"1" + t`): off the worker when that operand may have one.
do
    for _, event in ipairs({ "__add", "__sub", "__mul", "__div", "__mod", "__pow", "__unm", "__idiv" }) do
        local f = string_mt[event]
        string_mt[event] = function(a, b)
            local ta, tb = type(a), type(b)
            if ta == "table" or ta == "userdata" or tb == "table" or tb == "userdata" then offload() end
            return f(a, b)
        end
    end
end

-- `ipairs` in Lua: the VM's indexing honours `__index` where the hook can slice it.
local function ipairs_next(t, i)
    i = i + 1
    local v = t[i]
    if v ~= nil then return i, v end
end
ipairs = function(...)
    local t = ...
    local tt = type(t)
    if tt ~= "table" and tt ~= "userdata" and tt ~= "string" then
        local got = select("#", ...) == 0 and "no value" or tt
        error("bad argument #1 to 'ipairs' (table expected, got " .. got .. ")", 2)
    end
    return ipairs_next, t, 0
end

-- C loops that use no memory are charged to the instruction budget; a big result is refused
-- up front (`rep_check`) and otherwise bounds the loop.
local rep, move = string.rep, table.move
string.rep = function(s, n, sep)
    rep_check(s, n, sep)
    if s == "" and (sep == nil or sep == "") then charge(1, n) end
    local unit = (type(s) == "string" and #s or 24) + (type(sep) == "string" and #sep or 0)
    if unit * (tonumber(n) or 0) > LONG then offload() end
    return rep(s, n, sep)
end
table.move = function(a1, f, e, t, a2)
    charge(f, e)
    if heavy(a1) or heavy(a2) or (tonumber(e) or 0) - (tonumber(f) or 0) > LONG then offload() end
    return move(a1, f, e, t, a2)
end

-- Lua runs finalizers with hooks disabled, so a looping __gc could never be stopped; Lua only
-- honours __gc present when setmetatable is called, so refusing it here is sufficient.
setmetatable = function(t, mt)
    if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
        error("__gc metamethods are not allowed in the sandbox", 2)
    end
    return raw_setmetatable(t, mt)
end

-- After a protected call returns, re-raise if the budget tripped, so an aborted call cannot
-- be swallowed. Message handlers and script coroutines are Lua run from C: off the worker.
local function checked(...) guard() return ... end
pcall = function(...) return checked(raw_pcall(...)) end

-- Lua calls the message handler of an error raised in the budget hook with hooks still off:
-- a handler that loops would never be stopped. The budget is checked before any handler of
-- the script runs; an error there makes Lua call the handler again, down to its C-stack limit
-- (about 200 levels), and xpcall then returns "error in error handling".
xpcall = function(f, handler, ...)
    offload()
    if type(handler) ~= "function" then return checked(raw_xpcall(f, handler, ...)) end
    return checked(raw_xpcall(f, function(...) guard() return handler(...) end, ...))
end

-- Threads a budget error ended keep hooks off (the error unwound out of the hook), so closing
-- one would run its pending closing values (`<close>`, or the fourth value of a generic `for`)
-- with no limit. Such threads are never closed: coroutines stopped while the budget was
-- tripped, and every call thread Rust replaced after a failed call (offload.rs adds those).
local stopped = raw_setmetatable({}, { __mode = "k" })
flags.stopped = stopped
local function note_stop(co, ok, ...)
    if not ok and not raw_pcall(guard) then stopped[co] = true end
    return ok, ...
end
coroutine.resume = function(co, ...) offload() return checked(note_stop(co, raw_resume(co, ...))) end
coroutine.close = function(co, ...)
    offload()
    if stopped[co] then
        return false, "cannot close a coroutine stopped by the sandbox's limits (its closing values are dropped)"
    end
    return checked(raw_close(co, ...))
end
coroutine.wrap = function(f)
    local co = raw_create(f)
    local function unwrap(ok, ...)
        guard()
        if ok then return ... end
        local err = ...
        -- Like Lua's own wrap: a string error gets the position of the call.
        if type(err) == "string" then error(err, 2) end
        error(err, 0)
    end
    return function(...)
        offload()
        return unwrap(note_stop(co, raw_resume(co, ...)))
    end
end

-- The call's own thread is the script's main thread: it cannot yield and reports itself as
-- main, as it did when calls ran on the main thread.
coroutine.yield = function(...)
    if raw_running() == flags.outer then error("attempt to yield from outside a coroutine", 2) end
    return raw_yield(...)
end
coroutine.isyieldable = function(...)
    local co = select("#", ...) > 0 and ... or raw_running()
    if co == flags.outer then return false end
    return raw_isyieldable(...)
end
coroutine.running = function()
    local co, main = raw_running()
    return co, main or co == flags.outer
end

