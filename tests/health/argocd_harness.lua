-- Runs an Argo CD health check (health/argocd/health.lua) on objects, the way Argo CD runs it:
-- the object in the global `obj`, only the base and table libraries in reach (Argo CD's VM
-- loads no string, math or io library unless useOpenLibs is set, and we do not set it), and
-- the returned table checked for a status Argo CD accepts.
--
-- Usage: lua5.1 argocd_harness.lua HEALTH_LUA CASES_LUA
-- CASES_LUA returns a list of { file = "...", obj = { ... } } (tests/e2e/health.rs writes it
-- from the objects it captured). Prints one line per case: file TAB status TAB message.
-- Exits non-zero when the check fails to load, errors, or returns something Argo CD rejects.

local check_path, cases_path = arg[1], arg[2]
if check_path == nil or cases_path == nil then
  io.stderr:write("usage: lua5.1 argocd_harness.lua HEALTH_LUA CASES_LUA\n")
  os.exit(2)
end

local valid = {
  Healthy = true, Progressing = true, Degraded = true,
  Suspended = true, Missing = true, Unknown = true,
}

-- What Argo CD's VM offers a health script: the base library and `table`.
local base = {
  "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "print",
  "rawequal", "rawget", "rawset", "select", "setmetatable", "tonumber", "tostring",
  "type", "unpack", "xpcall",
}
local function sandbox(obj)
  local env = { obj = obj, table = table }
  for _, name in ipairs(base) do
    env[name] = _G[name]
  end
  env._G = env
  return env
end

local cases = assert(dofile(cases_path), "the cases file must return a list")
local string_meta = getmetatable("")
local failures = 0
for _, case in ipairs(cases) do
  local chunk, err = loadfile(check_path)
  if chunk == nil then
    io.stderr:write("cannot load ", check_path, ": ", err, "\n")
    os.exit(1)
  end
  setfenv(chunk, sandbox(case.obj))
  -- No string library in Argo CD: s:sub() and friends must fail here as they would there.
  local string_index = string_meta.__index
  string_meta.__index = nil
  local ok, hs = pcall(chunk)
  string_meta.__index = string_index
  local status, message
  if not ok then
    status, message = "ERROR", tostring(hs)
  elseif type(hs) ~= "table" then
    status, message = "ERROR", "returned " .. type(hs) .. ", not a table"
  elseif not valid[hs.status] then
    status, message = "ERROR", "invalid health status " .. tostring(hs.status)
  elseif hs.message ~= nil and type(hs.message) ~= "string" then
    status, message = "ERROR", "message is a " .. type(hs.message)
  else
    status, message = hs.status, hs.message or ""
  end
  if status == "ERROR" then
    failures = failures + 1
  end
  message = string.gsub(message, "[\t\r\n]", " ")
  print(case.file .. "\t" .. status .. "\t" .. message)
end
if failures > 0 then
  os.exit(1)
end
