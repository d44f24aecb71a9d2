// k3sreg web page: copy buttons, search while typing, and a confirmation before a delete. No dependencies.
"use strict";

function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    return navigator.clipboard.writeText(text);
  }
  const area = document.createElement("textarea");
  area.value = text;
  document.body.appendChild(area);
  area.select();
  document.execCommand("copy");
  area.remove();
  return Promise.resolve();
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  copyText(button.dataset.copy).then(() => {
    button.classList.add("done");
    button.textContent = "copied";
    setTimeout(() => { button.classList.remove("done"); button.textContent = "copy"; }, 1500);
  }).catch(() => { button.textContent = "copy failed"; });
});

document.addEventListener("submit", (event) => {
  const button = event.target.querySelector("button[data-confirm]");
  if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
});

(function searchWhileTyping() {
  const input = document.getElementById("q");
  if (!input) return;
  let timer = null;
  let asked = 0;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const form = input.form;
      const url = new URL(form.action, window.location.href);
      if (input.value) url.searchParams.set("q", input.value);
      const mine = ++asked;
      const fragment = new URL(url);
      fragment.searchParams.set("fragment", "repos");
      const answer = await fetch(fragment, { credentials: "same-origin" });
      if (!answer.ok || mine !== asked) return;
      const list = document.getElementById("repos");
      list.outerHTML = await answer.text();
      window.history.replaceState(null, "", url);
    }, 150);
  });
})();
