// "Export my data": a JSON file (the user, every note and preference, the local audit
// trail) through the system save dialog. A guest may not export — the spec's example of
// a sensitive operation — and is shown the upgrade form with the reason instead.

import { careApi } from "../auth-client.js";
import { $ } from "../dom.js";
import { setStatus } from "../state.js";
import { openForm } from "./upgrade.js";
import { closeAccountMenu } from "./account-menu.js";

export const EXPORT_REASON = "Create an account to export your notes";

async function exportData() {
  closeAccountMenu();
  const gate = await careApi.requireFullAccount();
  if (gate.error?.code === "ANONYMOUS_NOT_ALLOWED") return openForm(null, EXPORT_REASON);
  if (gate.error) return setStatus(gate.error.message, true);
  const { data, error } = await careApi.exportData();
  if (error?.code === "ANONYMOUS_NOT_ALLOWED") return openForm(null, EXPORT_REASON);
  if (error) return setStatus(error.message, true);
  if (data) setStatus(`Your data was exported to ${data}.`);
}

export function initExport() {
  $("account-export").addEventListener("click", exportData);
}
