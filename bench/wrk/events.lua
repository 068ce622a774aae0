-- wrk script of bench/service_load.py: POSTs events in one of three shapes (LS_MODE):
--   single    one event per request, POST /v1/streams/{id}/events, over 1024 streams a thread
--   stream50  LS_EVENTS events of one stream per request (same route, {"events": [...]})
--   multi256  LS_EVENTS events over as many streams per request, POST /v1/events
-- LS_IDS=1 gives every event an id (as the Python client does, for safe retries).
-- Stream ids start with LS_TAG (unique per run, so event times never go back on a stream), and
-- a stream's event times only increase. A request counts as bad when its status is not 200
-- or, for multi256, when an item failed. done() prints one JSON line.
local mode = os.getenv("LS_MODE") or "single"
local per = tonumber(os.getenv("LS_EVENTS") or "1")
local nfeat = tonumber(os.getenv("LS_FEATURES") or "6")
local tag = os.getenv("LS_TAG") or "run"
local with_ids = os.getenv("LS_IDS") == "1"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  n = 0
  bad = 0
  t0 = 1700000000.0
  local v = {}
  for i = 1, nfeat do v[i] = string.format("%.3f", 0.1 * i) end
  xs = "[" .. table.concat(v, ",") .. "]"
  prefix = tag .. "-" .. tid .. "-"
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

local function event(stream, t)
  if with_ids then
    return string.format('{"stream_id":"%s%s","t":%.3f,"x":%s,"id":"%s%s-%d"}',
      prefix, stream, t, xs, prefix, stream, n)
  end
  return string.format('{"stream_id":"%s%s","t":%.3f,"x":%s}', prefix, stream, t, xs)
end

function request()
  n = n + 1
  local t = t0 + n * 0.01
  if mode == "single" then
    local path = "/v1/streams/" .. prefix .. (n % 1024) .. "/events"
    return wrk.format(nil, path, nil, string.format('{"t":%.3f,"x":%s}', t, xs))
  elseif mode == "stream50" then
    local items = {}
    for k = 1, per do items[k] = string.format('{"t":%.4f,"x":%s}', t + k * 0.0001, xs) end
    local path = "/v1/streams/" .. prefix .. (n % 64) .. "/events"
    return wrk.format(nil, path, nil, '{"events":[' .. table.concat(items, ",") .. "]}")
  else
    local items = {}
    local group = (n % 64) * per
    for k = 1, per do items[k] = event(group + k, t) end
    return wrk.format(nil, "/v1/events", nil, '{"events":[' .. table.concat(items, ",") .. "]}")
  end
end

function response(status, headers, body)
  if status ~= 200 or (mode == "multi256" and not string.find(body, '"failed":%s*0[,}]')) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local nbad = 0
  for _, thread in ipairs(threads) do nbad = nbad + thread:get("bad") end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bad":%d,"socket_errors":%d,'
      .. '"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, nbad, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
