-- The email upgrade: each request upgrades a different pre-created guest (its bearer
-- token from the file given after `--`) to a unique address. Thread i of n takes
-- tokens i, i+n, i+2n, …; once its share is spent it starts over, and those requests
-- fail (the guest is no longer anonymous): the bench reports them as errors.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("index", threads)
end

function init(args)
  all = {}
  for line in io.lines(args[1]) do
    if #line > 0 then all[#all + 1] = line end
  end
  mine = {}
  local n = tonumber(args[2])
  for i = index, #all, n do mine[#mine + 1] = all[i] end
  next_token = 1
end

function request()
  local token = mine[next_token]
  local body = string.format(
    '{"email":"bench-%d-%d@example.com","password":"correct horse battery staple","name":"Bench"}',
    index, next_token)
  next_token = next_token % #mine + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end
