-- GET get-session with a bearer token. Each wrk thread takes one pre-created live
-- token (line N of the file given after `--`), so the request stays static: no Lua
-- runs per request and the generator's cost is the same for every server.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("index", threads)
end

function init(args)
  local tokens = {}
  for line in io.lines(args[1]) do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  local token = tokens[((index - 1) % #tokens) + 1]
  wrk.headers["Authorization"] = "Bearer " .. token
end
