// Small DOM helpers shared by the screens.

export const $ = (id) => document.getElementById(id);

export function button(label, cls, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = `secondary ${cls}`;
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

/** "1 note", "3 notes". */
export const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** "3 notes and 2 preferences", leaving out a count that is zero. */
export function countWords({ notes, preferences }) {
  const parts = [];
  if (notes > 0) parts.push(plural(notes, "note"));
  if (preferences > 0) parts.push(plural(preferences, "preference"));
  return parts.join(" and ") || "nothing";
}

export const providerLabel = (name) => name.charAt(0).toUpperCase() + name.slice(1);

/**
 * Shows `error` in `el` and ties it to `field` for a screen reader (aria-invalid,
 * aria-describedby), so the words are read out with the field they are about.
 */
export function showError(el, error, field = null) {
  el.textContent = error.message;
  el.dataset.code = error.code;
  el.hidden = false;
  if (field) {
    field.setAttribute("aria-invalid", "true");
    const ids = new Set((field.getAttribute("aria-describedby") ?? "").split(" ").filter(Boolean));
    ids.add(el.id);
    field.setAttribute("aria-describedby", [...ids].join(" "));
  }
}

/** Hides the errors and clears the fields' invalid marks (their descriptions stay: hidden text is not read). */
export function clearErrors(errors, fields) {
  for (const el of errors) {
    el.hidden = true;
    el.textContent = "";
    delete el.dataset.code;
  }
  for (const f of fields) f.removeAttribute("aria-invalid");
}

/**
 * Marks a slow action in progress: the button is disabled and says what is happening
 * ("Signing in…"). Returns the function that puts it back.
 */
export function busy(btn, label) {
  const before = btn.textContent;
  btn.disabled = true;
  btn.setAttribute("aria-busy", "true");
  btn.textContent = label;
  return () => {
    btn.disabled = false;
    btn.removeAttribute("aria-busy");
    btn.textContent = before;
  };
}

export function formatTime(iso) {
  const d = new Date(iso);
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay ? d.toLocaleTimeString([], { hour: "numeric", minute: "2-digit" }) : d.toLocaleString();
}
