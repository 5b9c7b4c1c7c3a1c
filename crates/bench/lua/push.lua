-- POST sync/push: one new note change per request (what a device sends after an edit),
-- each for a record id of its own so the server stores every one (no duplicates).
-- Thread N takes every Nth token of the file given after `--` and rotates through them
-- per request, so 20 connections spread over 20 users, not one.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("index", threads)
end

function init(args)
  local all = {}
  for line in io.lines(args[1]) do
    if #line > 0 then all[#all + 1] = line end
  end
  local step = tonumber(args[2])
  tokens = {}
  for i = index, #all, step do tokens[#tokens + 1] = all[i] end
  if #tokens == 0 then tokens[1] = all[1] end
  counter = 0
end

function request()
  counter = counter + 1
  local token = tokens[(counter % #tokens) + 1]
  -- 16 digits are valid base64: 12 opaque bytes, unique per thread and request.
  local change = string.format("%08d%08d", index, counter)
  local body = string.format(
    '{"changes":[{"collection":"notes","id":"bench-%d-%d","change":"%s",' ..
    '"deleted":false,"schemaVersion":1}]}', index, counter, change)
  return wrk.format("POST", nil, {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
    ["x-guestpass-sync-protocol"] = "1",
  }, body)
end
