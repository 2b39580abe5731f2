// Hangar's own behaviour for plain (non-htmx) elements, so no template carries inline
// handlers: markup says what it wants with a data- attribute, and one listener here does it.
// htmx forms ask with hx-confirm instead; htmx handles those itself.

// <form data-confirm="Question?">: submit only if the user agrees.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm !== undefined
      && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

// <input data-select-on-click>: one click selects the whole value, ready to copy.
document.addEventListener("click", (event) => {
  const input = event.target;
  if (input instanceof HTMLInputElement && input.hasAttribute("data-select-on-click")) {
    input.select();
  }
});

// <button data-copy="id">: copies the text of the element with that id (a token shown once).
// Where the clipboard is out of reach (plain http), the text is selected for Ctrl+C instead.
document.addEventListener("click", async (event) => {
  const button = event.target instanceof Element ? event.target.closest("[data-copy]") : null;
  if (!(button instanceof HTMLElement)) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  try {
    await navigator.clipboard.writeText(source.textContent.trim());
    button.textContent = "Copied";
  } catch {
    window.getSelection()?.selectAllChildren(source);
    button.textContent = "Press Ctrl+C";
  }
});

// <pre data-scroll-to-end>: a live log shows its newest lines after every htmx swap.
document.addEventListener("htmx:afterSettle", (event) => {
  if (!(event.target instanceof Element)) return;
  const logs = [...event.target.querySelectorAll("[data-scroll-to-end]")];
  if (event.target.matches("[data-scroll-to-end]")) logs.push(event.target);
  for (const log of logs) log.scrollTop = log.scrollHeight;
});

// <div hx-get… data-pending="Checking…">: the moment it asks again (the form changed), what
// it shows stops passing for the answer. A placeholder marked data-pending-replace ("Pick a
// VM size…") gives way to the pending text; an answer for the old values stays, dimmed and
// aria-busy (hangar.css), so a link in it does not vanish under a click that caused the ask.
document.addEventListener("htmx:beforeRequest", (event) => {
  const element = event.detail.elt;
  if (!(element instanceof HTMLElement) || element.dataset.pending === undefined) return;
  element.setAttribute("aria-busy", "true");
  for (const placeholder of element.querySelectorAll("[data-pending-replace]")) {
    const pending = document.createElement("div");
    pending.className = placeholder.className;
    pending.dataset.testid = "pending";
    pending.textContent = element.dataset.pending;
    placeholder.replaceWith(pending);
  }
});
document.addEventListener("htmx:afterSettle", (event) => {
  if (event.target instanceof HTMLElement && event.target.dataset.pending !== undefined) {
    event.target.removeAttribute("aria-busy");
  }
});
for (const failure of ["htmx:responseError", "htmx:sendError"]) {
  document.addEventListener(failure, (event) => {
    const element = event.detail.elt;
    if (!(element instanceof HTMLElement) || element.dataset.pending === undefined) return;
    const failed = document.createElement("div");
    failed.className = "text-danger small mb-3";
    failed.textContent = "Could not check just now; change a field to try again.";
    element.replaceChildren(failed);
    element.removeAttribute("aria-busy");
  });
}
