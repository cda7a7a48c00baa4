// Uploads a model version to the API with a progress bar (a plain XHR: fetch reports no upload progress).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("version-upload");
  if (!form) return;
  const bar = document.getElementById("upload-progress");
  const status = document.getElementById("upload-status");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const schema = { class_names: [], thresholds: {} };
    for (const part of (data.get("classes") || "").split(",")) {
      const [name, threshold] = part.split("=").map((s) => s.trim());
      if (!name) continue;
      schema.class_names.push(name);
      schema.thresholds[name] = threshold === undefined ? 0.5 : Number(threshold);
    }
    data.delete("classes");
    data.set("output_schema", JSON.stringify(schema));
    if (!data.get("parent")) data.delete("parent");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-CSRFToken", data.get("csrfmiddlewaretoken"));
    xhr.setRequestHeader("Accept", "application/json");
    bar.hidden = false;
    xhr.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      bar.value = Math.round((100 * e.loaded) / e.total);
      status.textContent = `Uploading: ${bar.value}%`;
    });
    xhr.addEventListener("load", () => {
      if (xhr.status === 201) {
        status.textContent = "Uploaded and checked.";
        window.location = form.dataset.next.replace("/0/", `/${JSON.parse(xhr.responseText).id}/`);
        return;
      }
      let problems = `The upload was refused (${xhr.status}).`;
      try {
        const body = JSON.parse(xhr.responseText);
        problems = Object.entries(body).map(([field, errors]) => `${field}: ${[].concat(errors).join(" ")}`).join(" ");
      } catch (ignored) { /* not JSON: keep the status line */ }
      status.textContent = problems;
    });
    xhr.addEventListener("error", () => { status.textContent = "The upload failed: the connection was lost. Try again."; });
    status.textContent = "Uploading…";
    xhr.send(data);
  });
});
