// 消防远程监控中心 (GB/T 26875.3) on the duty desk: a 链路故障 note while a
// centre is unreachable, and the centre's 查岗 with a button that answers
// it. Polls /api/v1/northbound/gb26875 with the console's session token
// (sessionStorage, as app.js keeps it); no inline script or style.
"use strict";
(function () {
  const POLL_MS = 2000;
  let box = null;

  function token() {
    try {
      const s = JSON.parse(sessionStorage.getItem("console.session") || "null");
      return s && s.token;
    } catch (_) {
      return null;
    }
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function time(ms) {
    const d = new Date(ms + 8 * 3600000);
    return d.toISOString().slice(11, 19);
  }

  async function answer(id, button) {
    button.disabled = true;
    try {
      const r = await fetch("/api/v1/northbound/gb26875/duty-checks/" + id + "/answer", {
        method: "POST",
        headers: { Authorization: "Bearer " + token() },
      });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) {
        button.disabled = false;
        button.textContent = body.message || "应答失败";
        return;
      }
      poll();
    } catch (_) {
      button.disabled = false;
    }
  }

  function render(status) {
    if (!box) {
      box = el("section", "gb26875");
      box.id = "gb26875";
      document.body.insertBefore(box, document.getElementById("main"));
    }
    box.replaceChildren();
    for (const l of status.links || []) {
      if (!l.up && l.note) box.append(el("div", "gb26875-link-down", l.note));
    }
    const now = Date.now();
    for (const c of status.duty_checks || []) {
      if (c.answered_at) {
        if (now - c.answered_at < 60000) {
          box.append(el("div", "gb26875-check done",
            "监控中心查岗已应答（" + c.answered_by + "，" + time(c.answered_at) + "）"));
        }
        continue;
      }
      if (c.missed) {
        if (now - c.deadline < 600000) {
          box.append(el("div", "gb26875-check missed", "监控中心查岗未在时限内应答（" + time(c.asked_at) + "）"));
        }
        continue;
      }
      const row = el("div", "gb26875-check pending",
        "消防远程监控中心查岗（" + c.site + "，" + time(c.asked_at) + "），请于 " + time(c.deadline) + " 前应答 ");
      const b = el("button", "gb26875-answer primary", "应答查岗");
      b.type = "button";
      b.dataset.id = String(c.id);
      b.addEventListener("click", () => answer(c.id, b));
      row.append(b);
      box.append(row);
    }
    box.hidden = box.childElementCount === 0;
  }

  async function poll() {
    const t = token();
    if (!t) {
      if (box) box.hidden = true;
      return;
    }
    try {
      const r = await fetch("/api/v1/northbound/gb26875", { headers: { Authorization: "Bearer " + t } });
      if (r.ok) render(await r.json());
    } catch (_) {
      /* the next poll tries again */
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    poll();
    setInterval(poll, POLL_MS);
  });
})();
