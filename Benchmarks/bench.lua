-- Shared by the wrk scripts here: settings from the environment, and the Bearer token on every request.
-- Load with: dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "bench.lua")
local bench = {}

-- NAME from the environment, or the first line of the file named by NAME_FILE; exits when neither is set.
function bench.setting(name, script)
  local value = os.getenv(name)
  if (value == nil or value == "") and os.getenv(name .. "_FILE") then
    local f = io.open(os.getenv(name .. "_FILE"), "r")
    if f then value = f:read("*l"); f:close() end
  end
  if value == nil or value == "" then
    io.stderr:write(script .. ": set " .. name .. " (or " .. name .. "_FILE)\n")
    os.exit(1)
  end
  return value
end

-- Every request: the method, JSON accepted, and BENCH_TOKEN as the Bearer token.
function bench.authorized(method, script)
  wrk.method = method
  wrk.headers["Authorization"] = "Bearer " .. bench.setting("BENCH_TOKEN", script)
  wrk.headers["Accept"] = "application/json"
end

return bench
