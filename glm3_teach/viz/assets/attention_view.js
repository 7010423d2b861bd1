// glm3-teach attention viewer: head view, model view and pattern scores, drawn from one payload.
// The same module runs inside JupyterLab (anywidget calls render({model, el})) and in the
// self-contained HTML export (a small local model object stands in for the widget's).
// No network: no imports, fonts arrive as base64 in the "font" field.

const ROW = 22;          // px per token row in the head view
const LINE_MIN = 0.01;   // lines lighter than this are not drawn
const MAX_LINES = 600;   // the strongest lines only (the status line says when some were left out)
const FONT_FAMILY = "GLM3 Course CJK";

function decodeProbs(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const raw = new Uint16Array(bytes.buffer);
  const out = new Float32Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw[i] / 65535;
  return out;
}

function headColor(h, numHeads, alpha = 1) {
  const hue = Math.round((h * 360) / Math.max(numHeads, 1) + 210) % 360;
  return `hsla(${hue}, 75%, 42%, ${alpha})`;
}

function viridis(t) {
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const x = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(x), stops.length - 2), f = x - i;
  return stops[i].map((c, k) => Math.round(c + f * (stops[i + 1][k] - c)));
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function installFont(b64) {
  if (!b64 || typeof FontFace === "undefined") return;
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  try {
    const face = new FontFace(FONT_FAMILY, bytes.buffer);
    await face.load();
    document.fonts.add(face);
  } catch (error) {
    console.warn("glm3-teach viewer: the course font did not load", error);
  }
}

// ---- the data of one payload -------------------------------------------------------------
class Attn {
  constructor(p) {
    this.p = p;
    this.L = p.layers.length; this.H = p.num_heads; this.q = p.q_len; this.k = p.k_len;
    this.off = this.k - this.q;                       // queries are the last q keys
    this.probs = decodeProbs(p.probs);                // [L, H, q, k]
    this.sink = new Uint8Array(this.k);
    for (const j of p.sinks) this.sink[j] = 1;
    this.keep = new Float32Array(this.L * this.H * this.q);  // 1 / (1 - sink weight) per row
    for (let r = 0; r < this.keep.length; r++) {
      let s = 0;
      for (const j of p.sinks) s += this.probs[r * this.k + j];
      this.keep[r] = s < 0.9999 ? 1 / (1 - s) : 0;
    }
  }
  // weight of query row i on key j in (layer index l, head h); hideSinks renormalises the rest
  w(l, h, i, j, hideSinks) {
    const r = (l * this.H + h) * this.q + i;
    const v = this.probs[r * this.k + j];
    if (!hideSinks) return v;
    return this.sink[j] ? 0 : v * this.keep[r];
  }
}

// ---- the view ---------------------------------------------------------------------------
function render({ model, el: host }) {
  const root = el("div", "av-root");
  root.style.fontFamily = `"${FONT_FAMILY}", "Noto Sans CJK SC", "Source Han Sans SC", sans-serif`;
  host.appendChild(root);
  let A = null;
  const st = { hover: null, draws: 0, loads: 0 };
  const get = (k, d) => { const v = model.get(k); return v === undefined || v === null ? d : v; };
  const push = (changes) => { for (const [k, v] of Object.entries(changes)) model.set(k, v); model.save_changes(); };

  // controls
  const bar = el("div", "av-bar");
  const textBox = el("input", "av-text"); textBox.type = "text"; textBox.title = "句子 sentence (Enter to show)";
  const chatBox = el("input"); chatBox.type = "checkbox";
  const chatLabel = el("label", "av-check"); chatLabel.append(chatBox, " 对话格式 chat format");
  const showBtn = el("button", "av-btn", "显示 show");
  const fixedText = el("span", "av-fixed");
  const modelSel = el("select", "av-model"); modelSel.title = "模型 model";
  const layerSel = el("select", "av-layer"); layerSel.title = "层 layer";
  const headSel = el("select", "av-head"); headSel.title = "头 head";
  const sinkBox = el("input"); sinkBox.type = "checkbox";
  const sinkLabel = el("label", "av-check"); sinkLabel.append(sinkBox, " 隐藏 hide [gMASK] sop");
  sinkLabel.title = "drop the sink columns and rescale each row over the other keys";
  const headBtn = el("button", "av-btn av-tab", "头视图 head view");
  const gridBtn = el("button", "av-btn av-tab", "模型视图 model view");
  const status = el("span", "av-status");
  const row1 = el("div", "av-row"); row1.append(textBox, chatLabel, showBtn, fixedText);
  const row2 = el("div", "av-row");
  row2.append(el("span", "av-lbl", "模型 model"), modelSel, el("span", "av-lbl", "层 layer"), layerSel,
              el("span", "av-lbl", "头 head"), headSel, sinkLabel, headBtn, gridBtn, status);
  bar.append(row1, row2);

  const legend = el("div", "av-legend");
  const main = el("div", "av-main");
  const headView = el("div", "av-headview");
  const scroller = el("div", "av-scroll");
  const leftCol = el("div", "av-col av-left");
  const canvas = el("canvas", "av-lines");
  const rightCol = el("div", "av-col av-right");
  scroller.append(leftCol, canvas, rightCol);
  const captions = el("div", "av-captions");
  captions.append(el("span", "av-cap", "查询 query (from)"), el("span", "av-cap av-capr", "键 key (to)"));
  headView.append(captions, scroller);
  const side = el("div", "av-side");
  const scoreTable = el("table", "av-scores");
  const detail = el("div", "av-detail");
  side.append(el("div", "av-sidetitle", "模式分数 pattern scores (this layer)"), scoreTable, detail);
  const gridView = el("div", "av-grid");
  main.append(headView, side, gridView);
  root.append(bar, legend, main);

  // -- state helpers
  const layer = () => Math.min(get("layer", 0), A ? A.L - 1 : 0);
  const head = () => get("head", -1);
  const hide = () => !!get("hide_sinks", false);
  const view = () => get("view", "head");
  const focus = () => get("selected", null) || st.hover;
  const shownHeads = () => (head() >= 0 ? [head()] : [...Array(A.H).keys()]);

  const setOptions = (sel, pairs) => {            // rebuild a menu only when its entries change
    const sig = JSON.stringify(pairs);
    if (sel.dataset.sig !== sig) { sel.replaceChildren(...pairs.map(([t, v]) => new Option(t, v))); sel.dataset.sig = sig; }
  };

  function fillControls() {
    const editable = !!get("editable", false);
    textBox.style.display = chatLabel.style.display = showBtn.style.display = editable ? "" : "none";
    fixedText.style.display = editable ? "none" : "";
    fixedText.textContent = `句子 text: ${get("text", "")}`;
    if (document.activeElement !== textBox) textBox.value = get("text", "");
    chatBox.checked = !!get("chat", false);
    setOptions(modelSel, get("model_options", []).map((name) => [name, name]));
    modelSel.value = get("model_name", "");
    if (!A) return;
    setOptions(layerSel, A.p.layers.map((n, l) => [`${n}`, `${l}`]));
    layerSel.value = `${layer()}`;
    setOptions(headSel, [["全部 all", "-1"], ...[...Array(A.H).keys()].map((h) => [`${h}`, `${h}`])]);
    headSel.value = `${head()}`;
    sinkBox.checked = hide();
    headBtn.classList.toggle("av-on", view() === "head");
    gridBtn.classList.toggle("av-on", view() === "model");
  }

  function fillLegend() {
    legend.replaceChildren();
    if (!A) return;
    const all = el("span", "av-chip" + (head() < 0 ? " av-on" : ""), "全部 all");
    all.onclick = () => push({ head: -1 });
    legend.append(all);
    for (let h = 0; h < A.H; h++) {
      const chip = el("span", "av-chip" + (head() === h ? " av-on" : ""), `${h}`);
      chip.style.setProperty("--c", headColor(h, A.H));
      chip.dataset.head = `${h}`;
      chip.onclick = () => push({ head: head() === h ? -1 : h });
      legend.append(chip);
    }
  }

  function buildTokens() {
    leftCol.replaceChildren(); rightCol.replaceChildren();
    if (!A) return;
    const mk = (j, cls) => {
      const t = el("div", `av-tok ${cls} av-${A.p.kinds[j]}`, A.p.tokens[j]);
      const pos = A.p.positions ? A.p.positions[j] : (j >= A.off ? [j - A.off, j - A.off] : null);
      t.title = `${j}: ${A.p.tokens[j]}` + (!pos ? "" : pos[0] === pos[1] ? ` (id ${A.p.ids[pos[0]]})`
                                                                   : ` (tokens ${pos[0]}..${pos[1]}, weights summed)`);
      t.style.top = `${j * ROW}px`;
      return t;
    };
    for (let j = 0; j < A.k; j++) {
      const r = mk(j, "av-k"); r.dataset.j = `${j}`; rightCol.append(r);
      if (j >= A.off) { const l = mk(j, "av-q"); l.dataset.i = `${j - A.off}`; leftCol.append(l); }
    }
    const height = A.k * ROW + 4;
    leftCol.style.height = rightCol.style.height = `${height}px`;
    canvas.style.height = `${height}px`;
  }

  // The strongest lines only: at most MAX_LINES, so a 28 x 32-head model draws as fast as a small one.
  function drawLines() {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 220, hgt = A.k * ROW + 4;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hgt * dpr)) {
      canvas.width = Math.round(w * dpr); canvas.height = Math.round(hgt * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    const l = layer(), hs = shownHeads(), f = focus(), hid = hide();
    const each = (visit) => {                           // every candidate line: visit(weight, head, row, column)
      for (const h of hs) {
        if (f && f.side === "row") for (let j = 0; j < A.k; j++) visit(A.w(l, h, f.index, j, hid), h, f.index, j);
        else if (f && f.side === "col") for (let i = 0; i < A.q; i++) visit(A.w(l, h, i, f.index, hid), h, i, f.index);
        else for (let i = 0; i < A.q; i++) for (let j = 0; j <= i + A.off; j++) visit(A.w(l, h, i, j, hid), h, i, j);
      }
    };
    const bins = new Uint32Array(1001);                 // a histogram finds the MAX_LINES-th weight without sorting
    each((v) => { if (v >= LINE_MIN) bins[Math.floor(v * 1000)]++; });
    let cut = 1000, count = bins[1000];
    while (cut > 0 && count + bins[cut - 1] <= MAX_LINES) count += bins[--cut];
    const floor = Math.max(LINE_MIN, cut / 1000);
    const lines = [];                                   // [weight, head, query row, key column]
    each((v, h, i, j) => { if (v >= floor) lines.push([v, h, i, j]); });
    st.capped = floor > LINE_MIN;
    const y = (j) => j * ROW + ROW / 2 + 1;
    const scale = hs.length > 1 ? 0.8 : 1;
    const paths = new Map();                            // lines grouped by head and alpha step
    for (const [v, h, i, j] of lines) {
      const key = h * 10 + Math.min(9, Math.floor(v * 10));
      if (!paths.has(key)) paths.set(key, []);
      paths.get(key).push([i + A.off, j]);
    }
    ctx.lineWidth = f ? 2.5 : 1.5;
    for (const [key, segs] of paths) {
      const h = Math.floor(key / 10), b = key % 10;
      ctx.strokeStyle = headColor(h, A.H, Math.min(1, ((b + 0.5) / 10) * scale + 0.05));
      // one short path per line: Skia rasterises a path of many crossing segments far slower
      for (const [a, c] of segs) { ctx.beginPath(); ctx.moveTo(2, y(a)); ctx.lineTo(w - 2, y(c)); ctx.stroke(); }
    }
    return lines.length;
  }

  function shadeTokens() {
    const l = layer(), hs = shownHeads(), f = focus(), hid = hide();
    for (const t of leftCol.children) { t.style.background = ""; t.classList.toggle("av-sel", !!f && f.side === "row" && +t.dataset.i === f.index); }
    for (const t of rightCol.children) { t.style.background = ""; t.classList.toggle("av-sel", !!f && f.side === "col" && +t.dataset.j === f.index); }
    detail.replaceChildren();
    if (!f) { detail.textContent = "悬停或点击一个词元 hover or click a token: left = its row (what it reads), right = its column (who reads it)"; return; }
    const mean = (i, j) => hs.reduce((s, h) => s + A.w(l, h, i, j, hid), 0) / hs.length;
    const cells = [];
    if (f.side === "row") {
      for (const t of rightCol.children) { const j = +t.dataset.j; const v = mean(f.index, j); cells.push([A.p.tokens[j], v]); t.style.background = `rgba(255, 140, 0, ${Math.min(1, v * 1.5)})`; }
    } else {
      for (const t of leftCol.children) { const i = +t.dataset.i; const v = mean(i, f.index); cells.push([A.p.tokens[i + A.off], v]); t.style.background = `rgba(255, 140, 0, ${Math.min(1, v * 1.5)})`; }
    }
    const who = A.p.tokens[f.side === "row" ? f.index + A.off : f.index];
    detail.append(el("div", "av-dtitle", f.side === "row" ? `「${who}」 reads:` : `who reads 「${who}」:`));
    cells.sort((a, b) => b[1] - a[1]);
    for (const [tok, v] of cells.slice(0, 6)) detail.append(el("div", "av-drow", `${tok}  ${v.toFixed(2)}`));
  }

  function fillScores() {
    scoreTable.replaceChildren();
    const names = Object.keys(A.p.scores);
    const l = layer();
    const headRow = el("tr"); headRow.append(el("th", "", "头 head"));
    for (const n of names) headRow.append(el("th", "", n.replace("_", " ")));
    scoreTable.append(headRow);
    const best = names.map((n) => Math.max(...A.p.scores[n][l]));
    for (let h = 0; h < A.H; h++) {
      const tr = el("tr", head() === h ? "av-on" : "");
      const th = el("td", "av-hcell", `${h}`); th.style.color = headColor(h, A.H);
      tr.append(th);
      names.forEach((n, c) => {
        const v = A.p.scores[n][l][h];
        const td = el("td", v === best[c] ? "av-best" : "", v.toFixed(2));
        td.style.background = `rgba(33, 145, 140, ${Math.min(0.85, v)})`;
        tr.append(td);
      });
      tr.onclick = () => push({ head: head() === h ? -1 : h });
      scoreTable.append(tr);
    }
  }

  // The model view: every layer x head map in one canvas (1 pixel per weight, scaled up by CSS),
  // painted once per payload and sink option; a click finds its map from the position.
  const GAP = 2;
  let gridKey = null;
  const gridCanvas = el("canvas", "av-gridcanvas");
  const gridMark = el("div", "av-gridmark");
  const gridHeads = el("div", "av-gridheads"), gridLayers = el("div", "av-gridlayers");
  const gridBox = el("div", "av-gridbox");
  gridBox.append(gridCanvas, gridMark);
  const gridBody = el("div", "av-gridbody");
  gridBody.append(gridLayers, gridBox);
  gridView.append(el("div", "av-sidetitle", "每层每头 layers x heads (each map scaled to its own max, rows that see one key left out; click one)"),
                  gridHeads, gridBody);
  const cellSize = () => Math.max(24, Math.min(96, Math.floor(880 / A.H)));

  function paintGrid() {
    const hid = hide(), cw = A.k + GAP, ch = A.q + GAP;
    gridCanvas.width = A.H * cw; gridCanvas.height = A.L * ch;
    const ctx = gridCanvas.getContext("2d");
    const img = ctx.createImageData(gridCanvas.width, gridCanvas.height);
    const px = img.data, lut = Array.from({ length: 256 }, (_, t) => viridis(t / 255));
    const row = new Float32Array(A.k);
    for (let l = 0; l < A.L; l++) for (let h = 0; h < A.H; h++) {
      let max = 1e-6;                                  // rows that see a single (unhidden) key would always be 1
      const firstRow = hid ? A.p.sinks.length + 1 : 1;
      for (let i = 0; i < A.q; i++) if (i + A.off >= firstRow) for (let j = 0; j <= i + A.off; j++) max = Math.max(max, A.w(l, h, i, j, hid));
      for (let i = 0; i < A.q; i++) {
        for (let j = 0; j < A.k; j++) row[j] = j <= i + A.off ? A.w(l, h, i, j, hid) : -1;
        let o = (((l * ch) + i) * gridCanvas.width + h * cw) * 4;
        for (let j = 0; j < A.k; j++, o += 4) {
          const c = row[j] < 0 ? [245, 245, 245] : lut[Math.min(255, Math.round((row[j] / max) * 255))];
          px[o] = c[0]; px[o + 1] = c[1]; px[o + 2] = c[2]; px[o + 3] = 255;
        }
      }
    }
    ctx.putImageData(img, 0, 0);
    const s = cellSize();
    gridCanvas.style.width = `${(A.H * cw * s) / (A.k + GAP)}px`;
    gridCanvas.style.height = `${(A.L * ch * s) / (A.k + GAP)}px`;
    gridCanvas.dataset.maps = `${A.L * A.H}`;
    gridHeads.replaceChildren(...[...Array(A.H).keys()].map((h) => el("span", "av-gh", `${h}`)));
    gridHeads.style.gridTemplateColumns = `repeat(${A.H}, ${s}px)`;
    gridLayers.replaceChildren(...A.p.layers.map((n) => el("span", "av-gh av-gl", `L${n}`)));
    gridLayers.style.gridTemplateRows = `repeat(${A.L}, ${(ch * s) / (A.k + GAP)}px)`;
  }

  function drawGrid() {
    const key = `${st.loads}:${hide()}`;
    if (gridKey !== key) { paintGrid(); gridKey = key; }
    const s = cellSize(), cw = A.k + GAP, ch = A.q + GAP;
    const ok = head() >= 0;
    gridMark.style.display = ok ? "" : "none";
    if (ok) {
      const sx = s / cw;
      Object.assign(gridMark.style, { left: `${head() * cw * sx}px`, top: `${layer() * ch * sx}px`,
                                      width: `${A.k * sx}px`, height: `${A.q * sx}px` });
    }
  }

  gridCanvas.addEventListener("click", (e) => {
    const r = gridCanvas.getBoundingClientRect();
    const h = Math.floor(((e.clientX - r.left) / r.width) * A.H), l = Math.floor(((e.clientY - r.top) / r.height) * A.L);
    if (h >= 0 && h < A.H && l >= 0 && l < A.L) push({ layer: l, head: h, view: "head" });
  });
  gridCanvas.addEventListener("mousemove", (e) => {
    const r = gridCanvas.getBoundingClientRect();
    const h = Math.floor(((e.clientX - r.left) / r.width) * A.H), l = Math.floor(((e.clientY - r.top) / r.height) * A.L);
    if (A && h >= 0 && h < A.H && l >= 0 && l < A.L) gridCanvas.title = `层 layer ${A.p.layers[l]} · 头 head ${h}: click to open`;
  });

  function draw(hoverOnly = false) {                 // hoverOnly: the menus, chips and scores stay as they are
    const t0 = performance.now();
    if (!hoverOnly) fillControls();
    if (!A) { status.textContent = get("status", ""); return; }
    const isHead = view() === "head";
    headView.style.display = side.style.display = legend.style.display = isHead ? "" : "none";
    gridView.style.display = isHead ? "none" : "";
    let drawn = 0;
    if (isHead && hoverOnly) { drawn = drawLines(); shadeTokens(); }
    else if (isHead) { fillLegend(); drawn = drawLines(); shadeTokens(); fillScores(); } else drawGrid();
    st.draws++;
    const ms = performance.now() - t0;
    root.dataset.state = JSON.stringify({ model: A.p.model, layer: layer(), head: head(), view: view(), hide: hide(), focus: focus() });
    root.dataset.lines = `${drawn}`; root.dataset.draws = `${st.draws}`; root.dataset.drawMs = ms.toFixed(1);
    const capped = isHead && st.capped ? ` · strongest ${drawn} lines` : "";
    status.textContent = get("status", "") || `${A.p.note || `${A.k} tokens`} · ${A.p.model || ""}${capped}`;
  }

  function load() {
    const p = get("payload", null);
    A = p && p.probs ? new Attn(p) : null;
    st.loads++;
    if (A) buildTokens();
    draw();
  }

  // events: hover previews, click locks (click again to unlock)
  const tokenEvent = (target) => {
    const t = target.closest(".av-tok");
    if (!t) return null;
    return t.dataset.i !== undefined ? { side: "row", index: +t.dataset.i } : { side: "col", index: +t.dataset.j };
  };
  scroller.addEventListener("mouseover", (e) => {
    const f = tokenEvent(e.target), h = st.hover;
    if (f && !get("selected", null) && !(h && h.side === f.side && h.index === f.index)) { st.hover = f; draw(true); }
  });
  scroller.addEventListener("mouseleave", () => { if (st.hover) { st.hover = null; draw(true); } });
  scroller.addEventListener("click", (e) => {
    const f = tokenEvent(e.target), cur = get("selected", null);
    const same = f && cur && cur.side === f.side && cur.index === f.index;
    st.hover = null;
    push({ selected: f && !same ? f : null });
  });
  layerSel.onchange = () => push({ layer: +layerSel.value });
  headSel.onchange = () => push({ head: +headSel.value });
  sinkBox.onchange = () => push({ hide_sinks: sinkBox.checked });
  headBtn.onclick = () => push({ view: "head" });
  gridBtn.onclick = () => push({ view: "model" });
  modelSel.onchange = () => {
    const all = get("payloads", null);  // the HTML export carries one payload per model
    if (all) push({ model_name: modelSel.value, payload: all[modelSel.value], selected: null });
    else { status.textContent = "计算中 computing..."; push({ model_name: modelSel.value, selected: null }); }
  };
  const submit = () => { status.textContent = "计算中 computing..."; push({ text: textBox.value, chat: chatBox.checked, selected: null }); };
  showBtn.onclick = submit;
  textBox.addEventListener("keydown", (e) => { if (e.key === "Enter") submit(); });

  const names = ["layer", "head", "hide_sinks", "view", "selected", "status", "model_options", "model_name"];
  const redraw = () => draw();
  for (const n of names) model.on(`change:${n}`, redraw);
  model.on("change:payload", load);
  model.on("change:font", () => installFont(get("font", "")));
  installFont(get("font", ""));
  load();
  return () => {
    for (const n of names) model.off(`change:${n}`, redraw);
    model.off("change:payload", load);
  };
}

// A stand-in for the widget model, for the HTML export: same get/set/save_changes/on API.
function localModel(state) {
  const listeners = {}, changed = new Set();
  return {
    get: (k) => state[k],
    set: (k, v) => { state[k] = v; changed.add(k); },
    save_changes: () => {
      const keys = [...changed]; changed.clear();
      for (const k of keys) for (const cb of listeners[`change:${k}`] || []) cb();
    },
    on: (ev, cb) => { (listeners[ev] = listeners[ev] || []).push(cb); },
    off: (ev, cb) => { listeners[ev] = (listeners[ev] || []).filter((x) => x !== cb); },
  };
}

export { render, localModel };
export default { render };
