// app.js — the web console (Web 控制台): 登录, 值班台, 隐患工单, 监管端.
// Plain JavaScript, no build step. Talks only to /api/v1/… with the bearer
// token from /api/v1/login; the event stream is read with fetch() so the
// token goes in the Authorization header, never in a URL. Every piece of
// text from the server is put in the page as text (textContent), never as
// markup.
"use strict";

// ---------------------------------------------------------------- basics

const ROLE = { duty: "值班员", site_manager: "机构负责人", inspector: "民政局监管", admin: "管理员", installer: "安装人员" };
const ACTION = {
  register: "登记", list: "挂牌督办", start_rectification: "落实整改", report_rectified: "整改完成",
  review: "复查", accept: "验收", close: "销号", request_extension: "申请延期",
  decide_extension: "审批延期", reopen: "重新打开",
  opened: "开单", alarm_attached: "报警并入", reopened_by_recurrence: "复发重开", overdue: "逾期",
  escalated: "逾期上报", evidence: "上传佐证",
};
const STATUS = {
  pending_registration: "待登记", registered: "已登记", listed: "已挂牌", rectifying: "整改中",
  pending_review: "待复查", pending_acceptance: "待验收", closed: "已销号",
};
const KIND = { electrical_fire: "电气火灾", fire_facility: "消防设施", fault: "设备故障", offline: "设备离线" };
const DAY = 86400000, CST = 8 * 3600000;

const S = {
  session: null, // {token, user}
  sites: [], // [{id, name, nodes: [{id, location}]}]
  alarms: new Map(), // id → alarm (standing)
  stream: null, // AbortController of the event stream
  muted: localStorage.getItem("console.muted") === "1",
  audio: null,
  page: null,
};

function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const $ = (sel, root) => (root || document).querySelector(sel);
const main = () => $("#main");

function toast(text) {
  const t = $("#toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
}

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (S.session) headers.Authorization = "Bearer " + S.session.token;
  let body = opts.body;
  if (opts.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(opts.json);
  }
  const res = await fetch(path, { method: opts.method || "GET", headers, body, signal: opts.signal });
  if (res.status === 401 && S.session) {
    logout("登录已失效，请重新登录");
    throw new ApiError(401, "unauthenticated", "登录已失效，请重新登录");
  }
  if (!res.ok) {
    let code = "error", message = `请求失败（${res.status}）`;
    try { const b = await res.json(); code = b.error || code; message = b.message || message; } catch (_) { /* not JSON */ }
    throw new ApiError(res.status, code, message);
  }
  return opts.raw ? res : res.json();
}

// China time (UTC+8) for display, whatever the browser's zone.
function cst(ms) { return new Date(ms + CST).toISOString().replace("T", " ").slice(0, 19); }
function cstDay(ms) { return new Date(ms + CST).toISOString().slice(0, 10); }
function dayStart(dateText) { return Date.parse(dateText + "T00:00:00Z") - CST; }
function duration(s) {
  if (s < 10) return `${Math.max(0, s).toFixed(1)} 秒`;
  s = Math.round(s);
  if (s < 60) return `${s} 秒`;
  if (s < 3600) return `${Math.floor(s / 60)} 分 ${s % 60} 秒`;
  return `${Math.floor(s / 3600)} 小时 ${Math.floor((s % 3600) / 60)} 分`;
}
function siteName(id) { return (S.sites.find((s) => s.id === id) || {}).name || id; }
function nodePlace(site, node) {
  const n = ((S.sites.find((s) => s.id === site) || {}).nodes || []).find((x) => x.id === node);
  return (n && n.location) || node;
}

// Downloads a protected file (the token cannot go in a link).
async function download(path, fallbackName) {
  try {
    const res = await api(path, { raw: true });
    const cd = res.headers.get("content-disposition") || "";
    const m = /filename="([^"]+)"/.exec(cd);
    const url = URL.createObjectURL(await res.blob());
    const a = h("a", { href: url, download: m ? m[1] : fallbackName });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) { toast(e.message); }
}

// ---------------------------------------------------------------- sound

function unlockAudio() {
  if (!S.audio && window.AudioContext) S.audio = new AudioContext();
  if (S.audio && S.audio.state === "suspended") S.audio.resume();
}

// Two-tone cue; three times for an alarm, once for anything else.
function cue(urgent) {
  if (S.muted || !S.audio) return;
  const ctx = S.audio;
  const times = urgent ? 3 : 1;
  for (let i = 0; i < times; i++) {
    [[880, 0], [660, 0.25]].forEach(([f, dt]) => {
      const o = ctx.createOscillator(), g = ctx.createGain();
      o.frequency.value = f;
      o.type = "square";
      g.gain.value = 0.08;
      o.connect(g).connect(ctx.destination);
      const at = ctx.currentTime + i * 0.7 + dt;
      o.start(at);
      o.stop(at + 0.22);
    });
  }
}

function showMute() { $("#mute").textContent = S.muted ? "声音：关" : "声音：开"; }

// ---------------------------------------------------------------- session

function loadSession() {
  try { S.session = JSON.parse(sessionStorage.getItem("console.session") || "null"); } catch (_) { S.session = null; }
}

function logout(message) {
  if (S.session) {
    sessionStorage.removeItem("console.session");
    S.session = null;
  }
  if (S.stream) S.stream.abort();
  S.stream = null;
  S.alarms.clear();
  $("#top").hidden = true;
  S.loginMessage = message;
  location.hash = "#/login";
  renderLogin(message);
}

function homeOf(user) {
  if (user.role === "installer") return "#/commission";
  return user.role === "inspector" || user.role === "admin" ? "#/bureau" : "#/desk";
}

function renderLogin(message) {
  const err = h("div", { class: "message error", id: "login-error", hidden: !message }, message || "");
  const form = h("form", { id: "login-form", class: "login" },
    h("h1", {}, "智慧用电监测平台"),
    h("p", { class: "muted" }, "请使用值班员、机构负责人、民政局监管或安装人员账号登录"),
    h("label", {}, "用户名", h("input", { name: "login", autocomplete: "username", required: true, autofocus: true })),
    h("label", {}, "密码", h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    err,
    h("button", { type: "submit", class: "primary" }, "登录"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    unlockAudio();
    const login = form.login.value.trim(), password = form.password.value;
    try {
      const r = await api("/api/v1/login", { method: "POST", json: { login, password } });
      S.session = { token: r.token, user: r.user };
      S.loginMessage = null;
      sessionStorage.setItem("console.session", JSON.stringify(S.session));
      await start();
      location.hash = homeOf(r.user);
      route();
    } catch (e) {
      err.textContent = e.message;
      err.hidden = false;
    }
  });
  main().replaceChildren(form);
}

async function start() {
  const u = S.session.user;
  $("#user").textContent = `${u.name}（${ROLE[u.role] || u.role}）`;
  $("#top").hidden = false;
  S.sites = await api("/api/v1/sites");
  openStream();
}

// ---------------------------------------------------------------- events

function setLive(on) {
  const l = $("#live");
  l.classList.toggle("on", on);
  l.textContent = on ? "● 实时" : "● 重连中";
}

// Server-sent events over fetch: reconnects with back-off, reloads the
// lists after every (re)connection so nothing missed while away is lost.
function openStream() {
  if (S.stream) S.stream.abort();
  const ctrl = new AbortController();
  S.stream = ctrl;
  (async () => {
    let wait = 1000;
    while (!ctrl.signal.aborted) {
      try {
        const res = await api("/api/v1/events", { raw: true, signal: ctrl.signal, headers: { Accept: "text/event-stream" } });
        setLive(true);
        wait = 1000;
        await reloadAlarms();
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value.replace(/\r\n/g, "\n");
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let name = "message", data = "";
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) name = line.slice(6).trim();
              else if (line.startsWith("data:")) data += line.slice(5).trim();
            }
            if (data) onEvent(name, JSON.parse(data));
          }
        }
      } catch (e) {
        if (ctrl.signal.aborted || (e instanceof ApiError && e.status === 401)) return;
      }
      setLive(false);
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, 15000);
    }
  })();
}

function onEvent(name, ev) {
  if (name === "lagged") { reloadAlarms(); return; }
  if (name === "session_ended") { logout("登录已失效，请重新登录"); return; }
  if (ev.alarm) {
    const a = ev.alarm;
    const known = S.alarms.has(a.id);
    if (a.state === "cleared") S.alarms.delete(a.id);
    else S.alarms.set(a.id, a);
    if (name === "alarm_raised") {
      const urgent = a.level === "alarm" && (a.kind === "electrical_fire" || a.kind === "fire_facility");
      cue(urgent);
      if (!known) S.fresh.add(a.id);
      toast(a.notice_label
        ? `【提示】${siteName(a.site)} ${nodePlace(a.site, a.node)} ${a.channel} ${a.notice_label}`
        : `【${a.level_label}】${siteName(a.site)} ${nodePlace(a.site, a.node)} ${a.quantity_label || a.kind_label} ${a.value_display || ""}`);
    }
    if (S.page === "desk") renderAlarms();
  }
  if (ev.ticket && S.page === "tickets") renderTickets();
}
S.fresh = new Set();

async function reloadAlarms() {
  const list = await api("/api/v1/alarms?state=standing&limit=2000");
  S.alarms = new Map(list.map((a) => [a.id, a]));
  if (S.page === "desk") renderAlarms();
}

// ---------------------------------------------------------------- duty desk

const DESKS = [
  { cls: "fire", title: "电气火灾 / 消防设施报警", kinds: ["electrical_fire", "fire_facility"] },
  { cls: "fault", title: "设备故障", kinds: ["fault"] },
  { cls: "offline", title: "设备离线", kinds: ["offline"] },
];

function mayActOnAlarms() { return ["duty", "site_manager"].includes(S.session.user.role); }

function renderDesk() {
  S.page = "desk";
  const root = h("div", { id: "desk" },
    h("h1", {}, "值班台"),
    h("div", { class: "stats", id: "desk-stats" }),
    ...DESKS.map((d) => h("section", { class: "panel " + d.cls, id: "desk-" + d.cls },
      h("h2", {}, d.title), h("div", { class: "rows" }))),
    h("section", { class: "panel", id: "nodes" }, h("h2", {}, "各机构节点"), h("div", { class: "rows" }, "加载中…")),
    h("section", { class: "panel", id: "shift" }, h("h2", {}, "交接班记录"), h("div", { class: "rows" }, "加载中…")));
  main().replaceChildren(root);
  renderAlarms();
  renderNodes();
  renderShiftLog();
}

// 交接班记录: the latest handover notes, and a form for the next one.
async function renderShiftLog() {
  const box = $("#shift .rows");
  let notes = [];
  try { notes = await api("/api/v1/shift-log?limit=20"); } catch (e) { box.replaceChildren(h("div", { class: "empty" }, e.message)); return; }
  if (!$("#desk")) return;
  const list = notes.length
    ? h("table", {},
      h("thead", {}, h("tr", {}, ["时间", "机构", "记录人", "内容"].map((t) => h("th", {}, t)))),
      h("tbody", {}, notes.map((n) => h("tr", {},
        h("td", {}, cst(n.at)), h("td", {}, siteName(n.site)),
        h("td", {}, `${n.author}（${ROLE[n.role] || n.role}）`), h("td", { class: "note-text" }, n.text)))))
    : h("div", { class: "empty" }, "暂无交接班记录");
  const parts = [list];
  if (mayActOnAlarms() && S.sites.length) {
    const form = h("form", { class: "shift-form", id: "shift-form" },
      h("label", {}, "机构", h("select", { name: "site" }, S.sites.map((x) => h("option", { value: x.id }, x.name)))),
      h("label", { class: "block" }, "交班说明", h("textarea", { name: "text", maxlength: 2000, required: true, placeholder: "本班发生的报警、处置情况、待跟进事项…" })),
      h("button", { type: "submit" }, "提交交班记录"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = new FormData(form);
      try {
        await api("/api/v1/shift-log", { method: "POST", json: { site: f.get("site"), text: f.get("text") } });
        toast("交班记录已保存");
        renderShiftLog();
      } catch (e) { toast(e.message); }
    });
    parts.push(form);
  }
  box.replaceChildren(...parts);
}

function renderAlarms() {
  const root = $("#desk");
  if (!root) return;
  const all = [...S.alarms.values()].sort((a, b) => b.raised_at - a.raised_at);
  const stats = $("#desk-stats");
  stats.replaceChildren(...DESKS.map((d) => {
    const n = all.filter((a) => d.kinds.includes(a.kind)).length;
    return h("div", { class: "stat " + d.cls }, h("b", {}, n), d.title);
  }));
  const unacked = all.filter((a) => !a.acked_at).length;
  document.title = (unacked ? `(${unacked}) ` : "") + "值班台 · 智慧用电监测平台";
  for (const d of DESKS) {
    const rows = all.filter((a) => d.kinds.includes(a.kind));
    const box = $(`#desk-${d.cls} .rows`);
    if (!rows.length) { box.replaceChildren(h("div", { class: "empty" }, "无")); continue; }
    box.replaceChildren(h("table", {},
      h("thead", {}, h("tr", {}, ["级别", "机构", "位置", "内容", "发生时间", "状态", "确认", "操作"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.map(alarmRow))));
  }
  S.fresh.clear();
  renderNodeStates();
}

function alarmRow(a) {
  const what = a.quantity_label
    ? `${a.quantity_label} ${a.value_display || ""}${a.setpoint_display ? `（${a.level_label}值 ${a.setpoint_display}）` : ""}`
    : a.kind_label;
  const flags = [a.state_label, a.flapping ? "抖动" : null, a.suppressed ? "已抑制（根因报警）" : null].filter(Boolean).join("，");
  let ack;
  if (a.acked_at) {
    ack = h("span", { class: "acked ok-text" }, `已确认（${a.acked_by || ""}，确认用时 ${duration(a.time_to_ack_s)}）`);
  } else {
    ack = h("span", {},
      mayActOnAlarms() ? h("button", { class: "danger ack", onclick: (e) => ackAlarm(a.id, e.target) }, "确认") : null,
      " ", h("span", { class: "muted waiting", "data-since": a.raised_at }, "等待 " + duration((Date.now() - a.raised_at) / 1000)));
  }
  const ops = h("span", {},
    a.state === "latched" && mayActOnAlarms() ? h("button", { class: "reset", onclick: (e) => resetAlarm(a, e.target) }, "复位") : null,
    a.ticket_id ? h("a", { class: "ticket-link", href: `#/tickets/${a.ticket_id}` }, " 工单") : null);
  return h("tr", { "data-alarm-id": a.id, class: S.fresh.has(a.id) ? "new" : null },
    h("td", {}, h("span", { class: "badge " + a.level }, a.level_label)),
    h("td", {}, siteName(a.site)),
    h("td", {}, nodePlace(a.site, a.node), h("div", { class: "muted" }, a.node + (a.channel ? "/" + a.channel : ""))),
    h("td", {}, what),
    h("td", {}, cst(a.raised_at).slice(5)),
    h("td", {}, flags),
    h("td", {}, ack),
    h("td", {}, ops));
}

async function ackAlarm(id, button) {
  button.disabled = true;
  try {
    const a = await api(`/api/v1/alarms/${id}/ack`, { method: "POST" });
    S.alarms.set(a.id, a);
    renderAlarms();
    toast(`已确认，确认用时 ${duration(a.time_to_ack_s)}`);
  } catch (e) { button.disabled = false; toast(e.message); }
}

async function resetAlarm(a, button) {
  if (!confirm(`确认复位 ${siteName(a.site)} ${nodePlace(a.site, a.node)} 的报警？复位将记录操作人并发送到节点。`)) return;
  button.disabled = true;
  try {
    const r = await api(`/api/v1/alarms/${a.id}/reset`, { method: "POST" });
    if (r.state === "cleared") S.alarms.delete(r.id); else S.alarms.set(r.id, r);
    renderAlarms();
    toast("已复位");
  } catch (e) { button.disabled = false; toast(e.message); }
}

// Each site's nodes: online/offline from the standing offline alarms, and
// today's highest residual current and temperature per loop.
async function renderNodes() {
  const box = $("#nodes .rows");
  const today = {};
  await Promise.all(S.sites.flatMap((s) => ["residual_current", "temperature"].map(async (q) => {
    try {
      const t = await api(`/api/v1/trends/daily-max?site=${encodeURIComponent(s.id)}&quantity=${q}&days=1`);
      for (const p of t.points) {
        const key = `${s.id}/${p.node}`;
        (today[key] = today[key] || []).push(`${p.channel} ${q === "temperature" ? (p.max / 10).toFixed(1) + " °C" : p.max + " mA"}`);
      }
    } catch (_) { /* shown as no data */ }
  })));
  const latest = {};
  try {
    for (const r of await api("/api/v1/readings/latest")) {
      const v = r.quantity === "temperature" ? (r.value / 10).toFixed(1) + " °C"
        : r.quantity === "residual_current" ? r.value + " mA" : String(r.value);
      (latest[`${r.site}/${r.node}`] = latest[`${r.site}/${r.node}`] || []).push(`${r.channel} ${v}（${cst(r.at).slice(11, 16)}）`);
    }
  } catch (_) { /* shown as no data */ }
  if (!$("#desk")) return;
  box.replaceChildren(h("table", {},
    h("thead", {}, h("tr", {}, ["机构", "节点", "位置", "状态", "最近读数（每分钟更新）", "今日最大值（每回路）"].map((t) => h("th", {}, t)))),
    h("tbody", {}, S.sites.flatMap((s) => s.nodes.map((n) =>
      h("tr", { "data-node": `${s.id}/${n.id}` },
        h("td", {}, s.name), h("td", {}, n.id), h("td", {}, n.location || ""),
        h("td", { class: "node-state" }),
        h("td", {}, (latest[`${s.id}/${n.id}`] || ["暂无读数"]).join("，")),
        h("td", {}, (today[`${s.id}/${n.id}`] || ["今日无读数"]).join("，"))))))));
  renderNodeStates();
}

function renderNodeStates() {
  for (const tr of document.querySelectorAll("#nodes tr[data-node]")) {
    const [site, node] = tr.dataset.node.split("/");
    const off = [...S.alarms.values()].some((a) => a.kind === "offline" && a.site === site && (a.node === node || a.node === ""));
    tr.querySelector(".node-state").replaceChildren(h("span", { class: "badge " + (off ? "offline" : "ok") }, off ? "离线" : "在线"));
  }
}

setInterval(() => {
  for (const e of document.querySelectorAll(".waiting[data-since]")) {
    e.textContent = "等待 " + duration((Date.now() - Number(e.dataset.since)) / 1000);
  }
}, 1000);

// ---------------------------------------------------------------- tickets

const TF = { status: "open", site: "", q: "" };

async function renderTickets() {
  S.page = "tickets";
  let list;
  try {
    list = await api(`/api/v1/tickets?status=${encodeURIComponent(TF.status)}&limit=2000`);
  } catch (e) { main().replaceChildren(h("div", { class: "message error" }, e.message)); return; }
  const shown = list.filter((t) => (!TF.site || t.site === TF.site) &&
    (!TF.q || (t.number + t.title + t.location).includes(TF.q)));
  const statusSel = h("select", { id: "ticket-status", onchange: (e) => { TF.status = e.target.value; renderTickets(); } },
    [["open", "未销号"], ["all", "全部"], ...Object.entries(STATUS)].map(([v, l]) =>
      h("option", { value: v, selected: v === TF.status }, l)));
  const siteSel = h("select", { onchange: (e) => { TF.site = e.target.value; renderTickets(); } },
    h("option", { value: "" }, "全部机构"), S.sites.map((s) => h("option", { value: s.id, selected: s.id === TF.site }, s.name)));
  const search = h("input", { placeholder: "编号 / 标题 / 位置", value: TF.q, onchange: (e) => { TF.q = e.target.value.trim(); renderTickets(); } });
  const now = Date.now();
  main().replaceChildren(h("div", { id: "tickets" },
    h("h1", {}, "隐患工单"),
    h("div", { class: "filters" }, "状态", statusSel, "机构", siteSel, search, h("span", { class: "muted" }, `共 ${shown.length} 条`)),
    h("section", { class: "panel" }, shown.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["编号", "机构", "标题", "类别", "等级", "状态", "开单时间", "整改期限"].map((t) => h("th", {}, t)))),
      h("tbody", {}, shown.map((t) => h("tr", { "data-ticket-id": t.id },
        h("td", {}, h("a", { href: `#/tickets/${t.id}` }, t.number)),
        h("td", {}, siteName(t.site)),
        h("td", {}, t.title, h("div", { class: "muted" }, t.location)),
        h("td", {}, t.category_label),
        h("td", {}, t.grade_label),
        h("td", {}, h("span", { class: "badge " + (t.status === "closed" ? "closed" : "open") }, t.status_label)),
        h("td", {}, cst(t.opened_at).slice(0, 16)),
        h("td", {}, t.deadline ? cstDay(t.deadline) : "—",
          t.overdue_at && t.status !== "closed" ? h("span", { class: "badge overdue" }, " 逾期") : null,
          t.deadline && !t.overdue_at && t.status !== "closed" && t.deadline < now ? h("span", { class: "badge overdue" }, " 已过期限") : null)))))
      : h("div", { class: "empty" }, "没有符合条件的工单"))));
}

function dateInput(name) { return h("input", { type: "date", name, required: true }); }
function text(name, label) { return h("label", {}, label, h("input", { name, required: true })); }
function noteBox() { return h("label", { class: "block" }, "说明", h("textarea", { name: "note", maxlength: 2000 })); }
function passed(name, yes, no) {
  return h("span", {}, h("label", {}, h("input", { type: "radio", name, value: "true", checked: true }), yes),
    h("label", {}, h("input", { type: "radio", name, value: "false" }), no));
}
function endOfDay(v) { return dayStart(v) + DAY - 1; }

// The form of each step of the closed loop, and how its fields become the step.
const STEPS = {
  register: { fields: (t) => [h("label", {}, "等级", h("select", { name: "grade" },
    h("option", { value: "general", selected: t.grade === "general" }, "一般隐患"),
    h("option", { value: "major", selected: t.grade === "major" }, "重大隐患")))],
  step: (f) => ({ action: "register", grade: f.grade.value }) },
  list: { fields: () => [text("supervisor", "督办单位"), text("document_no", "督办文号"), h("label", {}, "整改期限", dateInput("deadline"))],
    step: (f) => ({ action: "list", supervisor: f.supervisor.value, document_no: f.document_no.value, deadline: endOfDay(f.deadline.value) }) },
  start_rectification: {
    fields: () => [text("responsible_unit", "责任单位"), text("responsible_person", "责任人"), text("measures", "整改措施"),
      text("funds", "资金"), text("contingency_plan", "预案"), h("label", {}, "时限", dateInput("deadline"))],
    step: (f) => ({ action: "start_rectification", plan: {
      responsible_unit: f.responsible_unit.value, responsible_person: f.responsible_person.value, measures: f.measures.value,
      funds: f.funds.value, contingency_plan: f.contingency_plan.value, deadline: endOfDay(f.deadline.value) } }) },
  report_rectified: { fields: () => [], step: () => ({ action: "report_rectified" }) },
  review: { fields: () => [passed("passed", "复查合格", "不合格（退回整改）")], step: (f) => ({ action: "review", passed: f.passed.value === "true" }) },
  accept: { fields: () => [passed("passed", "验收合格", "不合格（退回整改）")], step: (f) => ({ action: "accept", passed: f.passed.value === "true" }) },
  close: { fields: () => [], step: () => ({ action: "close" }) },
  request_extension: { fields: () => [h("label", {}, "延期至", dateInput("until"))], step: (f) => ({ action: "request_extension", until: endOfDay(f.until.value) }) },
  decide_extension: { fields: () => [passed("approve", "批准", "驳回")], step: (f) => ({ action: "decide_extension", approve: f.approve.value === "true" }) },
  reopen: { fields: () => [], step: () => ({ action: "reopen" }) },
};

async function renderTicket(id) {
  S.page = "ticket";
  let d;
  try { d = await api(`/api/v1/tickets/${id}`); } catch (e) {
    main().replaceChildren(h("div", { class: "message error" }, e.message), h("a", { href: "#/tickets" }, "返回工单列表"));
    return;
  }
  const t = d.ticket;
  const facts = [
    ["机构", siteName(t.site)], ["位置", t.location || nodePlace(t.site, t.node)], ["回路", `${t.node}${t.channel ? "/" + t.channel : ""}`],
    ["类别", t.category_label], ["等级", t.grade_label], ["状态", t.status_label], ["开单时间", t.opened_at_text.slice(0, 19).replace("T", " ")],
    ["报警次数", t.alarm_count], ["整改期限", t.deadline ? cstDay(t.deadline) : null], ["责任单位", t.responsible_unit],
    ["责任人", t.responsible_person], ["整改措施", t.measures], ["资金", t.funds], ["预案", t.contingency_plan],
    ["督办单位", t.supervisor], ["督办文号", t.document_no], ["逾期", t.overdue_at ? cst(t.overdue_at) : null],
    ["延期申请至", t.extension_requested ? cstDay(t.extension_requested) : null], ["销号时间", t.closed_at ? cst(t.closed_at) : null],
  ].filter(([, v]) => v !== null && v !== undefined && v !== "");
  const message = h("div", { id: "step-message" });
  const forms = d.actions.map((code) => {
    const spec = STEPS[code];
    if (!spec) return null;
    const form = h("form", { class: "step", "data-action": code },
      h("h3", {}, ACTION[code] || code), ...spec.fields(t), noteBox(),
      h("button", { type: "submit", class: "primary" }, ACTION[code] || code));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await api(`/api/v1/tickets/${t.id}/transitions`, { method: "POST", json: { note: form.note.value, step: spec.step(form) } });
        toast(`${ACTION[code]}：已记录`);
        renderTicket(t.id);
      } catch (e) { message.replaceChildren(h("div", { class: "message error" }, e.message)); }
    });
    return form;
  });
  main().replaceChildren(h("div", { id: "ticket" },
    h("p", {}, h("a", { href: "#/tickets" }, "← 工单列表")),
    h("h1", {}, h("span", { id: "ticket-number" }, t.number), " ", t.title, " ",
      h("span", { class: "badge " + (t.status === "closed" ? "closed" : "open"), id: "ticket-status-label" }, t.status_label)),
    h("div", { class: "grid2" },
      h("section", { class: "panel" }, h("h2", {}, "工单信息"), h("dl", { class: "facts" }, facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]))),
      h("section", { class: "panel", id: "steps" }, h("h2", {}, "办理"), message,
        forms.length ? forms : h("div", { class: "empty" }, `当前状态下您（${ROLE[S.session.user.role]}）没有可办理的步骤`))),
    h("section", { class: "panel", id: "timeline" }, h("h2", {}, "办理记录（留痕）"),
      h("ol", { class: "timeline" }, d.events.map((e) => h("li", {},
        h("div", { class: "when" }, `${e.at_text.slice(0, 19).replace("T", " ")} · ${e.actor}${e.role ? "（" + (ROLE[e.role] || e.role) + "）" : ""}`),
        h("div", {}, h("b", {}, ACTION[e.action] || e.action),
          e.from_status || e.to_status ? ` ${STATUS[e.from_status] || "—"} → ${STATUS[e.to_status] || "—"}` : "",
          e.note ? `：${e.note}` : ""))))),
    h("section", { class: "panel", id: "readings" }, h("h2", {}, `关联读数（${d.readings.length}）`), readingsChart(d.readings)),
    h("section", { class: "panel", id: "linked-alarms" }, h("h2", {}, `关联报警（${d.alarms.length}）`),
      d.alarms.length ? h("table", {}, h("tbody", {}, d.alarms.map((a) => h("tr", {},
        h("td", {}, h("span", { class: "badge " + a.level }, a.level_label)), h("td", {}, cst(a.raised_at)),
        h("td", {}, a.notice_label || `${a.quantity_label || a.kind_label} ${a.value_display || ""}`), h("td", {}, a.state_label),
        h("td", {}, a.acked_at ? `已确认（${a.acked_by}，用时 ${duration(a.time_to_ack_s)}）` : "未确认")))))
        : h("div", { class: "empty" }, "无")),
    evidencePanel(t, d.evidence)));
}

function readingsChart(readings) {
  if (!readings.length) return h("div", { class: "empty" }, "暂无关联读数");
  const q = readings[0].quantity;
  const scale = q === "temperature" || q === "voltage" ? 0.1 : 1;
  const unit = { residual_current: "mA", temperature: "°C", water_pressure: "kPa", water_level: "mm" }[q] || "";
  const labels = readings.map((r) => cst(r.at).slice(5, 16));
  return Charts.line({ labels, unit, series: [{ name: "读数", cls: "s0", values: readings.map((r) => r.value * scale) }] });
}

function evidencePanel(t, evidence) {
  const list = h("ul", {}, evidence.map((e) => {
    const li = h("li", {}, `${cst(e.at)} ${e.actor}：`, e.note || "");
    if (e.kind === "file") {
      const show = h("button", { class: "small", type: "button", onclick: async () => {
        try {
          const res = await api(`/api/v1/evidence/${e.content_hash}`, { raw: true });
          const url = URL.createObjectURL(await res.blob());
          if ((e.media_type || "").startsWith("image/")) li.appendChild(h("img", { class: "evidence", src: url, alt: e.note || "整改照片" }));
          else window.open(url, "_blank", "noopener");
          show.disabled = true;
        } catch (err) { toast(err.message); }
      } }, `查看${(e.media_type || "").startsWith("image/") ? "照片" : "文件"}（${Math.ceil((e.size || 0) / 1024)} KB）`);
      li.appendChild(document.createTextNode(" "));
      li.appendChild(show);
    }
    return li;
  }));
  const msg = h("div");
  const form = h("form", { id: "evidence-form" },
    h("label", {}, "照片或文件（JPEG/PNG/WebP/PDF，≤ 10 MiB）", h("input", { type: "file", name: "file", accept: "image/jpeg,image/png,image/webp,application/pdf" })),
    h("label", { class: "block" }, "说明", h("input", { name: "note", maxlength: 2000, size: 40 })),
    h("button", { type: "submit" }, "上传佐证"), msg);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const file = form.file.files[0], note = form.note.value.trim();
    try {
      if (file) {
        await api(`/api/v1/tickets/${t.id}/evidence?note=${encodeURIComponent(note)}`, { method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" } });
      } else if (note) {
        await api(`/api/v1/tickets/${t.id}/evidence`, { method: "POST", json: { note } });
      } else { msg.replaceChildren(h("div", { class: "message error" }, "请选择文件或填写说明")); return; }
      toast("佐证已上传");
      renderTicket(t.id);
    } catch (e) { msg.replaceChildren(h("div", { class: "message error" }, e.message)); }
  });
  return h("section", { class: "panel", id: "evidence" }, h("h2", {}, `整改佐证（${evidence.length}）`),
    evidence.length ? list : h("div", { class: "empty" }, "尚无佐证"), form);
}

// ---------------------------------------------------------------- bureau

// Risk colour of a site (红/橙/黄/蓝) from its open hazards, overdue tickets
// and its alarm rate over the last 30 days.


const BF = { site: "", days: 30, quantity: "residual_current" };

async function renderBureau() {
  S.page = "bureau";
  main().replaceChildren(h("div", { class: "empty" }, "加载中…"));
  let weekly, risks;
  try {
    [weekly, risks] = await Promise.all([api("/api/v1/trends/weekly?weeks=12"), api("/api/v1/sites/risk")]);
  } catch (e) { main().replaceChildren(h("div", { class: "message error" }, e.message)); return; }
  const now = Date.now();
  if (!BF.site || !S.sites.some((s) => s.id === BF.site)) BF.site = (S.sites[0] || {}).id || "";
  // Graded by the gateway (GET /api/v1/sites/risk), over all the data.
  const cards = risks.map((r) =>
    h("div", { class: "site-card risk-" + r.grade, "data-site": r.site, "data-risk": r.grade },
      h("h3", {}, r.name || r.site), h("div", { class: "level" }, r.grade_label),
      h("div", { class: "why" }, `未销号 ${r.open} · 隐患 ${r.hazards} · 重大 ${r.major} · 逾期 ${r.overdue} · 近30天报警 ${r.recent_alarms}`)));
  const month = cstDay(now).slice(0, 7);
  const monthInput = h("input", { type: "month", id: "report-month", value: month });
  main().replaceChildren(h("div", { id: "bureau" },
    h("h1", {}, "监管端"),
    h("section", { class: "panel" }, h("h2", {}, `辖区机构风险分级（${S.sites.length} 家）`),
      h("p", { class: "muted" }, "红：有重大隐患未销号或 2 项以上逾期；橙：有逾期、3 项以上隐患或近 30 天报警 ≥ 10 次；黄：有隐患或近 30 天有报警；蓝：无。"),
      cards.length ? h("div", { class: "risk-map", id: "risk-map" }, cards) : h("div", { class: "empty" }, "辖区内没有机构")),
    h("section", { class: "panel", id: "trend" }, h("h2", {}, "每回路日最大值趋势"),
      h("div", { class: "filters" },
        "机构", h("select", { id: "trend-site", onchange: (e) => { BF.site = e.target.value; drawTrend(); } },
          S.sites.map((s) => h("option", { value: s.id, selected: s.id === BF.site }, s.name))),
        "指标", h("select", { onchange: (e) => { BF.quantity = e.target.value; drawTrend(); } },
          [["residual_current", "剩余电流"], ["temperature", "温度"]].map(([v, l]) => h("option", { value: v, selected: v === BF.quantity }, l))),
        "范围", h("select", { id: "trend-days", onchange: (e) => { BF.days = Number(e.target.value); drawTrend(); } },
          [30, 90, 365].map((d) => h("option", { value: d, selected: d === BF.days }, `近 ${d} 天`)))),
      h("div", { id: "trend-chart" })),
    h("div", { class: "grid2" },
      h("section", { class: "panel", id: "alarm-weeks" }, h("h2", {}, "每周报警次数（按类别，近 12 周）"), alarmWeeks(weekly)),
      h("section", { class: "panel", id: "ticket-weeks" }, h("h2", {}, "每周工单：新开、销号、逾期（近 12 周）"), ticketWeeks(weekly))),
    h("section", { class: "panel", id: "downloads" }, h("h2", {}, "台账与报表"),
      h("div", { class: "filters" },
        h("button", { type: "button", id: "ledger-download", onclick: () => download("/api/v1/ledger.csv", "ledger.csv") }, "下载隐患台账（CSV）"),
        "月报", monthInput,
        h("button", { type: "button", id: "report-download", onclick: () => download(`/api/v1/reports/monthly?month=${monthInput.value}&format=csv`, `report-${monthInput.value}.csv`) }, "下载月报（CSV）")))));
  drawTrend();
}

async function drawTrend() {
  const box = $("#trend-chart");
  if (!box || !BF.site) return;
  try {
    const t = await api(`/api/v1/trends/daily-max?site=${encodeURIComponent(BF.site)}&quantity=${BF.quantity}&days=${BF.days}`);
    const days = [];
    for (let d = dayStart(t.from); d <= dayStart(t.to); d += DAY) days.push(cstDay(d));
    const byLoop = new Map();
    for (const p of t.points) {
      const key = `${p.node}/${p.channel}`;
      if (!byLoop.has(key)) byLoop.set(key, new Map());
      byLoop.get(key).set(p.day, p.max);
    }
    const temp = BF.quantity === "temperature";
    const k = temp ? 0.1 : 1;
    const series = [...byLoop.entries()].sort().map(([key, m], i) => ({
      name: `${nodePlace(BF.site, key.split("/")[0])} ${key}`, cls: "s" + (i % 10),
      values: days.map((d) => (m.has(d) ? m.get(d) * k : null)),
    }));
    const limits = temp
      ? [{ value: 60, cls: "pre_alarm", name: "预警 60 °C" }, { value: 80, cls: "alarm", name: "报警 80 °C" }]
      : [{ value: 300, cls: "pre_alarm", name: "预警 300 mA" }, { value: 500, cls: "alarm", name: "报警 500 mA" }];
    box.replaceChildren(series.length
      ? Charts.line({ labels: days.map((d) => d.slice(5)), series, unit: temp ? "°C" : "mA", limits })
      : h("div", { class: "empty" }, `${t.from} 至 ${t.to} 无数据`));
  } catch (e) { box.replaceChildren(h("div", { class: "message error" }, e.message)); }
}


// Weekly counts come from the gateway (GET /api/v1/trends/weekly), over all the data.
function alarmWeeks(w) {
  const series = Object.entries(KIND).map(([k, name]) => ({ name, cls: "k-" + k, values: w.alarms[k] || w.weeks.map(() => 0) }));
  return Charts.bars({ labels: w.labels.map((d) => d.slice(5)), series, stacked: true, unit: "次" });
}

function ticketWeeks(w) {
  return Charts.bars({
    labels: w.labels.map((d) => d.slice(5)), unit: "件",
    series: [
      { name: "新开", cls: "t-opened", values: w.tickets.opened },
      { name: "销号", cls: "t-closed", values: w.tickets.closed },
      { name: "逾期", cls: "t-overdue", values: w.tickets.overdue },
    ],
  });
}

// ---------------------------------------------------------------- 安装调试

// The installer's page: register nodes (credentials shown once), self-test
// them, see what each loop learned and apply the recommended setpoints,
// and the commissioning report with the site manager's sign-off.
const CM = { site: null, credentials: null };
const Q = { residual_current: "剩余电流", temperature: "温度", arc: "故障电弧", current: "电流", voltage: "电压", water_pressure: "消防水压", water_level: "消防水位", loop_current: "回路电流" };

function mayRegister() { return ["installer", "admin"].includes(S.session.user.role); }
function maySetpoints() { return ["installer", "site_manager", "admin"].includes(S.session.user.role); }

async function renderCommission() {
  S.page = "commission";
  if (!CM.site || !S.sites.some((x) => x.id === CM.site)) CM.site = S.sites.length ? S.sites[0].id : null;
  const pick = h("select", { id: "cm-site" }, S.sites.map((x) => h("option", { value: x.id, selected: x.id === CM.site }, x.name || x.id)));
  pick.addEventListener("change", () => { CM.site = pick.value; CM.credentials = null; renderCommission(); });
  const root = h("div", { id: "commission" },
    h("h1", {}, "安装调试"),
    h("div", { class: "filters" }, "机构：", pick),
    h("section", { class: "panel", id: "cm-nodes" }, h("h2", {}, "节点登记与自检"), h("div", { class: "rows" }, "加载中…")),
    h("section", { class: "panel", id: "cm-baselines" }, h("h2", {}, "基线学习与推荐定值"), h("div", { class: "rows" }, "加载中…")),
    h("section", { class: "panel", id: "cm-report" }, h("h2", {}, "调试验收报告"), h("div", { class: "rows" }, "加载中…")));
  if (mayRegister()) root.insertBefore(addSiteForm(), $("#cm-nodes", root));
  main().replaceChildren(root);
  if (!CM.site) { $("#cm-nodes .rows").replaceChildren(h("div", { class: "empty" }, "您的管辖范围内还没有机构，请先新增机构")); return; }
  renderCmNodes();
  renderCmBaselines();
  renderCmReport();
}

// "rc1:residual_current:ct=1000" → {id, quantity, ct_ratio} / {id, quantity, sensor}.
function parseChannel(line) {
  const [id, quantity, third, extra] = line.trim().split(":");
  if (!id || !quantity || !third || extra !== undefined) throw new Error(`通道 “${line.trim()}” 格式应为 编号:测量量:ct=变比 或 编号:测量量:传感器`);
  return third.startsWith("ct=") ? { id, quantity, ct_ratio: Number(third.slice(3)) } : { id, quantity, sensor: third };
}

async function renderCmNodes() {
  const box = $("#cm-nodes .rows");
  let nodes = [];
  try { nodes = await api(`/api/v1/sites/${encodeURIComponent(CM.site)}/nodes`); } catch (e) { box.replaceChildren(h("div", { class: "message error" }, e.message)); return; }
  if (!$("#commission")) return;
  const results = h("div", { id: "cm-selftest" });
  const table = h("table", {},
    h("thead", {}, h("tr", {}, ["节点", "位置", "来源", "凭据", "通道", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, nodes.filter((n) => !n.revoked_at).map((n) => h("tr", { "data-node": n.id },
      h("td", {}, n.id), h("td", {}, n.location), h("td", {}, n.origin === "registered" ? "登记" : "配置文件"),
      h("td", {}, { none: "无", active: "有效", revoked: "已注销" }[n.credential] || n.credential),
      h("td", {}, n.channels.map((c) => `${c.id}（${Q[c.quantity] || c.quantity}${c.ct_ratio ? " " + c.ct_ratio + ":1" : c.sensor ? " " + c.sensor : ""}）`).join("、")),
      h("td", {}, h("button", { class: "small", onclick: () => runSelfTest(n.id, results) }, "自检"))))));
  const parts = [nodes.length ? table : h("div", { class: "empty" }, "尚无节点"), results];
  if (CM.credentials) {
    const c = CM.credentials;
    parts.unshift(h("div", { class: "message ok", id: "cm-credentials" },
      `节点 ${c.node} 已登记。MQTT 用户名（客户端 ID）：`, h("b", {}, c.username), "，密码：", h("b", { id: "cm-password" }, c.password),
      "。密码只显示这一次，请立即写入节点。",
      c.label ? h("div", {}, "节点标签（二维码内容）：", h("b", {}, c.label)) : null,
      c.artefact
        ? h("button", { class: "small", id: "cm-artefact", onclick: () => saveArtefact(c) }, "下载节点配置文件")
        : h("div", { class: "error" }, `节点配置文件未生成：${c.artefactError || ""}`)));
  }
  if (mayRegister()) parts.push(registerForm());
  box.replaceChildren(...parts);
}

// A new site (机构) in the installer's jurisdiction, e.g. home_c 康宁养老院.
function addSiteForm() {
  const err = h("div", { class: "message error", id: "cm-site-error", hidden: true });
  const f = h("form", { id: "cm-add-site", class: "filters" }, "新增机构：",
    h("input", { name: "id", placeholder: "机构编号，如 home_c", required: true, size: 12 }),
    h("input", { name: "name", placeholder: "机构名称，如 康宁养老院", required: true, size: 16 }),
    h("button", { type: "submit", class: "small" }, "新增"), err);
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const site = await api("/api/v1/sites", { method: "POST", json: { id: f.id.value.trim(), name: f.name.value.trim() } });
      S.sites = await api("/api/v1/sites");
      CM.site = site.id;
      CM.credentials = null;
      toast(`机构 ${site.name} 已新增`);
      renderCommission();
    } catch (e) { err.textContent = e.message; err.hidden = false; }
  });
  return f;
}

// The provisioning artefact (base64 in the registration answer) as a file.
function saveArtefact(c) {
  const bytes = Uint8Array.from(atob(c.artefact), (ch) => ch.charCodeAt(0));
  const a = h("a", { href: URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" })), download: `${CM.site}-${c.node}.fprv` });
  document.body.appendChild(a);
  a.click();
  a.remove();
}

function registerForm() {
  const err = h("div", { class: "message error", id: "cm-register-error", hidden: true });
  const f = h("form", { id: "cm-register", class: "filters" },
    h("input", { name: "id", placeholder: "节点编号，如 n07", required: true, size: 10 }),
    h("input", { name: "building", placeholder: "楼栋", required: true, size: 6 }),
    h("input", { name: "floor", placeholder: "楼层", required: true, size: 5 }),
    h("input", { name: "room", placeholder: "房间", required: true, size: 5 }),
    h("input", { name: "panel", placeholder: "配电箱", required: true, size: 6 }),
    h("textarea", { name: "channels", rows: 2, cols: 40, placeholder: "每行一个通道：rc1:residual_current:ct=1000\nt1:temperature:ntc", required: true }),
    h("button", { type: "submit", class: "primary" }, "登记节点"), err);
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const channels = f.channels.value.split("\n").filter((l) => l.trim()).map(parseChannel);
      const body = { id: f.id.value.trim(), location: { building: f.building.value.trim(), floor: f.floor.value.trim(), room: f.room.value.trim(), panel: f.panel.value.trim() }, channels };
      const r = await api(`/api/v1/sites/${encodeURIComponent(CM.site)}/nodes`, { method: "POST", json: body });
      CM.credentials = {
        node: r.node.id, username: r.credentials.username, password: r.credentials.password,
        artefact: r.artefact_base64, artefactError: r.artefact_error, label: r.label,
      };
      renderCmNodes();
      renderCmReport();
    } catch (e) { err.textContent = e.message; err.hidden = false; }
  });
  return f;
}

async function runSelfTest(node, box) {
  box.replaceChildren(h("div", { class: "muted" }, `节点 ${node} 自检中…（节点注入测试信号，测试报警不会推送、不会开单）`));
  try {
    const { id } = await api(`/api/v1/sites/${encodeURIComponent(CM.site)}/nodes/${encodeURIComponent(node)}/selftest`, { method: "POST" });
    let t;
    for (let i = 0; i < 180; i++) {
      t = await api(`/api/v1/selftests/${id}`);
      if (t.result !== "running") break;
      await new Promise((r) => setTimeout(r, 500));
    }
    box.replaceChildren(...[h("div", { class: "message " + (t.result === "passed" ? "ok" : "error"), id: "cm-selftest-result" },
      `节点 ${node} 自检${t.result_label}`, t.reason ? `：${t.reason}` : ""),
    t.channels.length === 0 ? null : h("table", {}, h("thead", {}, h("tr", {}, ["通道", "测量量", "结果", "通路时延", "说明"].map((x) => h("th", {}, x)))),
      h("tbody", {}, t.channels.map((c) => h("tr", {},
        h("td", {}, c.channel), h("td", {}, Q[c.quantity] || c.quantity),
        h("td", {}, h("span", { class: "badge " + (c.passed ? "ok" : "alarm") }, c.passed ? "通过" : "未通过")),
        h("td", {}, c.latency_ms === null ? "—" : `${c.latency_ms} ms`), h("td", {}, c.reason || "")))))].filter(Boolean));
    renderCmReport();
  } catch (e) { box.replaceChildren(h("div", { class: "message error" }, e.message)); }
}

async function renderCmBaselines() {
  const box = $("#cm-baselines .rows");
  let rows = [];
  try { rows = await api(`/api/v1/sites/${encodeURIComponent(CM.site)}/baselines`); } catch (e) { box.replaceChildren(h("div", { class: "message error" }, e.message)); return; }
  if (!$("#commission")) return;
  if (!rows.length) { box.replaceChildren(h("div", { class: "empty" }, "尚无剩余电流或温度读数")); return; }
  box.replaceChildren(h("table", {},
    h("thead", {}, h("tr", {}, ["节点", "通道", "状态", "自然水平（P50 / P95）", "推荐定值（预警 / 报警）", "依据", "在用定值", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((r) => {
      const rec = r.recommendation, b = r.baseline;
      const apply = rec && rec.alarm !== null && maySetpoints()
        ? h("button", { class: "small", onclick: async (ev) => {
          try {
            await api(`/api/v1/sites/${encodeURIComponent(CM.site)}/nodes/${encodeURIComponent(r.node)}/channels/${encodeURIComponent(r.channel)}/setpoints`,
              { method: "POST", json: { pre_alarm: rec.pre_alarm, alarm: rec.alarm, source: "recommendation" } });
            toast(`${r.node} ${r.channel} 已采用推荐定值（已记录并下发节点）`);
            renderCmBaselines(); renderCmReport();
          } catch (e) { toast(e.message); ev.target.disabled = false; }
        } }, "采用推荐定值") : null;
      return h("tr", {},
        h("td", {}, r.node), h("td", {}, `${r.channel}（${Q[r.quantity] || r.quantity}）`),
        h("td", {}, r.status === "learning" ? `学习中 ${r.percent}%` : r.status_label),
        h("td", {}, b && r.status === "learned" ? `${b.p50} / ${b.p95}` : "—"),
        h("td", {}, rec ? `${rec.pre_alarm ?? "—"} / ${rec.alarm ?? "—"}` : "—"),
        h("td", {}, rec ? rec.basis : "", rec && rec.hazard ? h("div", { class: "error" }, rec.hazard) : null),
        h("td", {}, r.applied ? `${r.applied.pre_alarm ?? "—"} / ${r.applied.alarm}（${r.applied.applied_by}）` : "默认"),
        h("td", {}, apply));
    }))));
}

async function download(path, name) {
  try {
    const res = await api(path, { raw: true });
    const a = h("a", { href: URL.createObjectURL(await res.blob()), download: name });
    document.body.appendChild(a);
    a.click();
    a.remove();
  } catch (e) { toast(e.message); }
}

async function renderCmReport() {
  const box = $("#cm-report .rows");
  if (!box) return;
  let v;
  try { v = await api(`/api/v1/sites/${encodeURIComponent(CM.site)}/commissioning`); } catch (e) { box.replaceChildren(h("div", { class: "message error" }, e.message)); return; }
  const r = v.report, site = encodeURIComponent(CM.site);
  const parts = [
    h("div", { class: "message " + (r.ready ? "ok" : "error"), id: "cm-ready" },
      `${r.channels} 个通道，自检通过 ${r.selftest_passed} 个：`, r.ready ? "具备验收条件" : "尚不具备验收条件（每个通道须自检通过且接线正常）"),
    h("div", { class: "filters" },
      h("button", { class: "small", onclick: () => download(`/api/v1/sites/${site}/commissioning.html`, `调试验收报告-${CM.site}.html`) }, "下载报告（可打印）"),
      h("button", { class: "small", onclick: () => download(`/api/v1/sites/${site}/commissioning.csv`, `调试验收报告-${CM.site}.csv`) }, "下载 CSV")),
  ];
  for (const s of v.signoffs) parts.push(h("div", { class: "message ok" }, `机构负责人 ${s.signed_by} 已于 ${cst(s.signed_at)} 签字：${s.note}（报告摘要 ${s.report_sha256.slice(0, 16)}…）`));
  if (S.session.user.role === "site_manager") {
    const err = h("div", { class: "message error", id: "cm-sign-error", hidden: true });
    const f = h("form", { id: "cm-sign", class: "filters" },
      h("input", { name: "note", placeholder: "验收意见，如 同意验收", required: true, size: 30 }),
      h("button", { type: "submit", class: "primary" }, "验收签字"), err);
    f.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await api(`/api/v1/sites/${site}/commissioning/sign-off`, { method: "POST", json: { note: f.note.value.trim() } });
        toast("已签字，报告已存档"); renderCmReport();
      } catch (e) { err.textContent = e.message; err.hidden = false; }
    });
    parts.push(f);
  }
  box.replaceChildren(...parts);
}

// ---------------------------------------------------------------- router

async function route() {
  if (!S.session) { renderLogin(S.loginMessage); return; }
  const hash = location.hash || homeOf(S.session.user);
  const [, page, id] = hash.split("/");
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("on", a.dataset.nav === page);
  if (page === "desk") renderDesk();
  else if (page === "tickets" && id) renderTicket(Number(id));
  else if (page === "tickets") renderTickets();
  else if (page === "bureau") renderBureau();
  else if (page === "commission") renderCommission();
  else { location.hash = homeOf(S.session.user); }
}

window.addEventListener("hashchange", route);
document.addEventListener("click", unlockAudio, { once: true });
window.addEventListener("DOMContentLoaded", async () => {
  showMute();
  $("#mute").addEventListener("click", () => {
    S.muted = !S.muted;
    localStorage.setItem("console.muted", S.muted ? "1" : "0");
    showMute();
    unlockAudio();
  });
  $("#logout").addEventListener("click", () => {
    // End the session on the server too: the token stops working at once.
    if (S.session) {
      fetch("/api/v1/logout", { method: "POST", headers: { Authorization: "Bearer " + S.session.token } }).catch(() => {});
    }
    logout();
  });
  loadSession();
  if (S.session) {
    try { await start(); } catch (_) { return; }
  }
  route();
});
