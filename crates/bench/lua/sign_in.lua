-- POST sign-in/anonymous with an empty JSON body: a new guest per request.
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
