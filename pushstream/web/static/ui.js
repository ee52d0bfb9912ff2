// The /ui page: looks things up through the /v1 API with the key typed into the page. Everything shown is
// set as text (textContent), never parsed as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  function credentials() {
    const app = $("app").value.trim();
    const key = $("key").value.trim();
    if (!app || !key) {
      throw new Error("enter the app id and its API key first");
    }
    return { app, key };
  }

  async function api(path) {
    const { app, key } = credentials();
    const response = await fetch("/v1/apps/" + encodeURIComponent(app) + path, {
      headers: { Authorization: "Bearer " + key, Accept: "application/json" },
      credentials: "omit",
      cache: "no-store",
    });
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (!response.ok) {
      const reason = body && body.error ? body.error : "HTTP " + response.status;
      const detail = body && body.detail ? ": " + (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : "";
      throw new Error(response.status + " " + reason + detail);
    }
    return body;
  }

  function text(value) {
    if (value === null || value === undefined) return "";
    if (Array.isArray(value)) return value.map(text).join(", ");
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function row(cells) {
    const tr = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      td.textContent = text(cell);
      tr.appendChild(td);
    }
    return tr;
  }

  function fill(tbody, rows) {
    tbody.replaceChildren(...rows);
  }

  function guarded(errorId, work) {
    return async (event) => {
      event.preventDefault();
      const error = $(errorId);
      error.textContent = "";
      try {
        await work();
      } catch (e) {
        error.textContent = e && e.message ? e.message : String(e);
      }
    };
  }

  async function lookUpUser() {
    const user = $("user").value.trim();
    const tbody = $("devices").tBodies[0];
    fill(tbody, []);
    $("preferences").textContent = "";
    if (!user) throw new Error("enter a user id");
    const path = "/users/" + encodeURIComponent(user);
    const [devices, preferences] = await Promise.all([api(path + "/devices"), api(path + "/preferences")]);
    fill(tbody, devices.devices.map((d) => row([d.device_id, d.platform, d.status, d.inactive_reason, d.locale,
                                                  d.tags, d.fingerprint])));
    if (devices.devices.length === 0) fill(tbody, [row(["no devices", "", "", "", "", "", ""])]);
    $("preferences").textContent = JSON.stringify(preferences.preferences, null, 2);
  }

  async function lookUpNotification() {
    const id = $("notification").value.trim();
    const tbody = $("progress").tBodies[0];
    fill(tbody, []);
    if (!id) throw new Error("enter a notification id");
    const progress = await api("/notifications/" + encodeURIComponent(id));
    const rows = [];
    for (const field of ["id", "targeted", "pending", "done", "opened", "first_at", "last_at"]) {
      rows.push(row([field, progress[field]]));
    }
    for (const [status, count] of Object.entries(progress.by_status || {})) {
      rows.push(row(["by_status." + status, count]));
    }
    for (const [reason, count] of Object.entries(progress.suppressed_by_reason || {})) {
      rows.push(row(["suppressed_by_reason." + reason, count]));
    }
    fill(tbody, rows);
  }

  async function countDeadLetters() {
    const tbody = $("dlq").tBodies[0];
    fill(tbody, []);
    const counts = await api("/dlq");
    const rows = Object.entries(counts.by_reason).map(([reason, count]) => row([reason, count]));
    rows.push(row(["total", counts.total]));
    fill(tbody, rows);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("user-form").addEventListener("submit", guarded("user-error", lookUpUser));
    $("notification-form").addEventListener("submit", guarded("notification-error", lookUpNotification));
    $("dlq-form").addEventListener("submit", guarded("dlq-error", countDeadLetters));
    document.body.dataset.ready = "1";
  });
})();
