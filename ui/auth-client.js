// authClient: the spec's client API over the app's Tauri commands. Every call returns
// {data, error}; error is {code, message} and callers branch on error.code.

const invoke = (cmd, args) => window.__TAURI__.core.invoke(cmd, args);

function asError(e) {
  if (e && typeof e === "object" && typeof e.code === "string") {
    return { code: e.code, message: e.message ?? e.code };
  }
  return { code: "UNKNOWN", message: String(e ?? "Unknown error") };
}

async function call(cmd, args) {
  try {
    return { data: await invoke(cmd, args), error: null };
  } catch (e) {
    return { data: null, error: asError(e) };
  }
}

export const authClient = {
  getSession: () => call("get_session"),
  signIn: {
    anonymous: () => call("sign_in_anonymous"),
  },
};

export const notesApi = {
  list: () => call("list_notes"),
  create: (body) => call("create_note", { body }),
  update: (id, body) => call("update_note", { id, body }),
  remove: (id) => call("delete_note", { id }),
};

export const preferencesApi = {
  set: (key, value) => call("set_preference", { key, value }),
};
