-- GET sync/pull from the start (the URL carries `limit`): a device's first page. Every
-- user was seeded with more changes than the limit, so each answer is a full page.
-- Tokens are spread over threads and rotated per request as in push.lua.
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
  return wrk.format("GET", nil, {
    ["Authorization"] = "Bearer " .. token,
    ["x-guestpass-sync-protocol"] = "1",
  })
end
