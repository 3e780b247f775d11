// charts.js — two small SVG charts for the console (line and bars), drawn
// with DOM calls: no library, no network. Colours come from CSS classes
// (s0…s9, k-*, t-*), so the page's content security policy needs no inline
// style.
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 900, H = 280, L = 56, R = 16, T = 12, B = 40;

  function el(name, attrs, text) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // A "nice" upper bound and step for an axis from 0 to max.
  function scale(max) {
    if (!(max > 0)) return { top: 1, step: 0.25 };
    const raw = max / 5;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
    return { top: Math.ceil(max / step) * step, step };
  }

  function frame(svg, labels, top, step, unit) {
    const plotW = W - L - R, plotH = H - T - B;
    for (let v = 0; v <= top + 1e-9; v += step) {
      const y = T + plotH - (v / top) * plotH;
      svg.appendChild(el("line", { x1: L, x2: W - R, y1: y, y2: y, class: "gridline" }));
      svg.appendChild(el("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, fmt(v)));
    }
    svg.appendChild(el("text", { x: 4, y: T + 8 }, unit || ""));
    svg.appendChild(el("line", { x1: L, x2: W - R, y1: T + plotH, y2: T + plotH, class: "axis" }));
    svg.appendChild(el("line", { x1: L, x2: L, y1: T, y2: T + plotH, class: "axis" }));
    const every = Math.max(1, Math.ceil(labels.length / 12));
    labels.forEach((lab, i) => {
      if (i % every !== 0 && i !== labels.length - 1) return;
      const x = xAt(i, labels.length);
      svg.appendChild(el("text", { x, y: H - B + 16, "text-anchor": "middle" }, lab));
    });
    return { plotW, plotH };
  }

  function xAt(i, n) {
    const plotW = W - L - R;
    return n <= 1 ? L + plotW / 2 : L + (i / (n - 1)) * plotW;
  }

  function fmt(v) {
    return Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(1);
  }

  function legend(items) {
    const div = document.createElement("div");
    div.className = "legend";
    for (const it of items) {
      const s = document.createElement("span");
      s.className = it.cls;
      s.textContent = it.name;
      div.appendChild(s);
    }
    return div;
  }

  // series: [{name, cls, values: [number|null per label]}]; limits: [{value, cls, name}]
  function line({ labels, series, unit, limits }) {
    const wrap = document.createElement("div");
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
    const all = series.flatMap((s) => s.values.filter((v) => v !== null));
    const max = Math.max(0, ...all, ...(limits || []).map((l) => l.value));
    const { top, step } = scale(max * 1.05);
    const { plotH } = frame(svg, labels, top, step, unit);
    const yAt = (v) => T + plotH - (v / top) * plotH;
    for (const lim of limits || []) {
      const y = yAt(lim.value);
      svg.appendChild(el("line", { x1: L, x2: W - R, y1: y, y2: y, class: "limit " + lim.cls }));
      svg.appendChild(el("text", { x: W - R - 4, y: y - 3, "text-anchor": "end" }, lim.name));
    }
    for (const s of series) {
      let d = "";
      let pen = false;
      s.values.forEach((v, i) => {
        if (v === null || v === undefined) { pen = false; return; }
        d += (pen ? "L" : "M") + xAt(i, labels.length).toFixed(1) + " " + yAt(v).toFixed(1) + " ";
        pen = true;
      });
      const p = el("path", { d: d.trim(), class: "series " + s.cls, "data-name": s.name });
      p.appendChild(el("title", {}, s.name));
      svg.appendChild(p);
      s.values.forEach((v, i) => {
        if (v === null || v === undefined) return;
        const c = el("circle", { cx: xAt(i, labels.length), cy: yAt(v), r: 2, class: s.cls });
        c.appendChild(el("title", {}, `${s.name} ${labels[i]}: ${fmt(v)}${unit ? " " + unit : ""}`));
        svg.appendChild(c);
      });
    }
    wrap.appendChild(svg);
    wrap.appendChild(legend(series));
    return wrap;
  }

  // Grouped (stacked = false) or stacked bars. series: [{name, cls, values}]
  function bars({ labels, series, unit, stacked }) {
    const wrap = document.createElement("div");
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
    const totals = labels.map((_, i) =>
      stacked ? series.reduce((a, s) => a + (s.values[i] || 0), 0) : Math.max(0, ...series.map((s) => s.values[i] || 0)));
    // Counts: whole-number steps.
    const sc = scale(Math.max(1, ...totals));
    const step = Math.max(1, Math.ceil(sc.step));
    const top = Math.ceil(sc.top / step) * step;
    const plotW = W - L - R;
    const { plotH } = frame(svg, [], top, step, unit);
    const slot = plotW / Math.max(1, labels.length);
    const every = Math.max(1, Math.ceil(labels.length / 12));
    labels.forEach((lab, i) => {
      const x0 = L + i * slot;
      if (i % every === 0) {
        svg.appendChild(el("text", { x: x0 + slot / 2, y: H - B + 16, "text-anchor": "middle" }, lab));
      }
      let base = 0;
      series.forEach((s, k) => {
        const v = s.values[i] || 0;
        const h = (v / top) * plotH;
        const bw = stacked ? slot * 0.7 : (slot * 0.8) / series.length;
        const x = stacked ? x0 + slot * 0.15 : x0 + slot * 0.1 + k * bw;
        const y = T + plotH - h - (stacked ? (base / top) * plotH : 0);
        if (v > 0) {
          const r = el("rect", { x, y, width: Math.max(1, bw - 1), height: h, class: s.cls });
          r.appendChild(el("title", {}, `${lab} ${s.name}: ${v}`));
          svg.appendChild(r);
        }
        base += v;
      });
    });
    wrap.appendChild(svg);
    wrap.appendChild(legend(series));
    return wrap;
  }

  return { line, bars };
})();
