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

// <pre data-scroll-to-end>: a live log shows its newest lines after every htmx swap.
document.addEventListener("htmx:afterSettle", (event) => {
  if (!(event.target instanceof Element)) return;
  const logs = [...event.target.querySelectorAll("[data-scroll-to-end]")];
  if (event.target.matches("[data-scroll-to-end]")) logs.push(event.target);
  for (const log of logs) log.scrollTop = log.scrollHeight;
});
