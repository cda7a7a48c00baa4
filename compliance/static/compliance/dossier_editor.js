// The dossier editor: autosave a moment after typing stops, and a warning before leaving with unsaved text.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form[data-autosave]");
  if (!form) return;
  const status = document.getElementById("autosave-status");
  const editCount = form.querySelector("input[name=edit_count]");
  let dirty = false;
  let timer = null;
  let saving = false;

  const say = (text) => { if (status) status.textContent = text; };
  const progress = (id, filled, required) => {
    const bar = document.getElementById(id);
    if (!bar) return;
    bar.max = required;
    bar.value = filled;
    if (bar.nextSibling && bar.nextSibling.nodeType === Node.TEXT_NODE) bar.nextSibling.textContent = ` ${filled} of ${required}`;
  };

  async function save() {
    if (!dirty || saving) return;
    saving = true;
    dirty = false;
    const data = new FormData(form);
    data.delete("action");
    say("Saving…");
    try {
      const response = await fetch(form.dataset.autosave, {
        method: "POST", body: data, credentials: "same-origin",
        headers: { "X-CSRFToken": data.get("csrfmiddlewaretoken"), Accept: "application/json" },
      });
      const body = await response.json();
      if (response.ok) {
        editCount.value = body.edit_count;
        for (const [key, s] of Object.entries(body.sections)) progress(`progress-${key}`, s.filled, s.required);
        progress("overall-progress", body.overall.filled, body.overall.required);
        say(`All changes saved at ${new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}.`);
      } else if (response.status === 409) {
        dirty = true;
        say(`${body.conflict} Press “Save” to compare both texts and merge them.`);
      } else {
        dirty = true;
        say("Not saved: " + (body.errors || []).map((e) => `${e.field}: ${e.message}`).join(" "));
      }
    } catch (error) {
      dirty = true;
      say("Not saved: the connection was lost. Your text is still here; it is saved when the connection is back.");
    } finally {
      saving = false;
    }
  }

  form.addEventListener("input", () => {
    dirty = true;
    say("Unsaved changes…");
    clearTimeout(timer);
    timer = setTimeout(save, 1500);
  });
  form.addEventListener("submit", () => { dirty = false; clearTimeout(timer); });
  window.addEventListener("beforeunload", (event) => {
    if (!dirty) return;
    event.preventDefault();
    event.returnValue = "";  // the browser shows its own "leave the page?" question
  });
});
