-- wrk script of bench/soak/serve.py: rotates over the paths given after `--`, counts
-- statuses per path and keeps a few non-200 bodies; done() writes JSON to $SOAK_WRK_OUT.
-- wrk's response() does not say which request it answers: each thread keeps its
-- connections in lock step (one request in flight per connection, no pipelining), and
-- the body of every valid answer names its path ("soak":"..."), so a 200 is attributed
-- by its body and anything else is counted under "non200".
local threads = {}
local paths = {}
local i = 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for _, p in ipairs(args) do table.insert(paths, p) end
  ok = {}
  non200 = {}
  samples = {}
  nsamples = 0
  badbody = 0
end

function request()
  i = i + 1
  if i > #paths then i = 1 end
  return wrk.format("GET", paths[i])
end

function response(status, headers, body)
  if status == 200 then
    local name = string.match(body, '"soak":"([^"]+)"')
    if name == nil then
      badbody = badbody + 1
      if nsamples < 5 then nsamples = nsamples + 1; samples[nsamples] = "200 " .. string.sub(body, 1, 300) end
    else
      ok[name] = (ok[name] or 0) + 1
    end
  else
    local k = tostring(status)
    non200[k] = (non200[k] or 0) + 1
    if nsamples < 5 then nsamples = nsamples + 1; samples[nsamples] = k .. " " .. string.sub(body, 1, 300) end
  end
end

local function str(s)
  return '"' .. string.gsub(tostring(s), '[%c"\\]', '?') .. '"'
end

local function enc(v)
  if type(v) == "table" then
    local parts = {}
    local n = 0
    for k, x in pairs(v) do
      n = n + 1
      parts[n] = str(k) .. ":" .. enc(x)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif type(v) == "number" then
    return tostring(v)
  else
    return str(v)
  end
end

function done(summary, latency, requests)
  local okall, non200all, samplesall, badbodyall = {}, {}, {}, 0
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("ok")) do okall[k] = (okall[k] or 0) + v end
    for k, v in pairs(t:get("non200")) do non200all[k] = (non200all[k] or 0) + v end
    for k, v in pairs(t:get("samples")) do samplesall[#samplesall + 1] = v end
    badbodyall = badbodyall + t:get("badbody")
  end
  local e = summary.errors
  local out = {
    requests = summary.requests,
    duration_us = summary.duration,
    errors = {connect = e.connect, read = e.read, write = e.write, status = e.status, timeout = e.timeout},
    ok = okall, non200 = non200all, badbody = badbodyall, samples = samplesall,
    latency_ms = {p50 = latency:percentile(50) / 1000, p99 = latency:percentile(99) / 1000,
                  p999 = latency:percentile(99.9) / 1000, max = latency.max / 1000},
  }
  local f = io.open(os.getenv("SOAK_WRK_OUT"), "w")
  f:write(enc(out))
  f:close()
end
