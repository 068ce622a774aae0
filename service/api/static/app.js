// liquidstream's live page: one stream's inputs and predictions, from the WebSocket
// /v1/streams/{id}/live (protocol: service/live/session.py). Vanilla JS, no dependencies.
// The page reads ?stream=<id> and ?token=<key> from its URL.
"use strict";

(() => {
  const MAX_POINTS = 300; // predictions kept for the charts
  const MAX_ROWS = 25; // rows of the table
  const MAX_RETRY_MS = 5000;
  const POLICY_VIOLATION = 1008; // bad key, invalid stream id, unknown model: do not retry
  const COLORS = ["#1d4ed8", "#b91c1c", "#047857", "#b45309", "#6d28d9", "#be185d", "#0e7490", "#4b5563"];

  const $ = (id) => document.getElementById(id);
  const page = {
    ws: null,
    wanted: false,
    retry: 0,
    timer: null,
    stream: "",
    token: "",
    inputs: [],
    outputs: [],
    points: [], // {t, x: [..], y: [..]}
    predictions: 0,
    resets: 0,
    drawQueued: false,
  };

  // -- status and counts ------------------------------------------------------------------
  function setStatus(state, text) {
    document.body.dataset.state = state;
    $("status").textContent = text;
  }

  function setCounts(p) {
    $("count-predictions").textContent = String(page.predictions);
    $("count-resets").textContent = String(page.resets);
    if (!p) {
      $("count-events").textContent = "–";
      $("last-dt").textContent = "–";
      $("latest-class").textContent = "–";
      $("latest-prob").textContent = "";
      return;
    }
    $("count-events").textContent = String(p.count);
    $("last-dt").textContent = `${Number(p.dt).toFixed(3)} s`;
  }

  // -- the served model --------------------------------------------------------------------
  function authHeaders() {
    return page.token ? { Authorization: `Bearer ${page.token}` } : {};
  }

  async function loadModel() {
    const el = $("model");
    try {
      const resp = await fetch("/v1/models", { headers: authHeaders() });
      if (resp.status === 401) {
        el.textContent = "This service needs an API key: enter it to see the model and stream.";
        return;
      }
      if (!resp.ok) {
        el.textContent = `Could not read the served model (HTTP ${resp.status}).`;
        return;
      }
      const body = await resp.json();
      const m = body.models.find((x) => x.default) || body.models[0];
      page.inputs = m.inputs || Array.from({ length: m.input_size }, (_, i) => `x${i}`);
      page.outputs = m.outputs || Array.from({ length: m.output_size }, (_, i) => `y${i}`);
      el.textContent =
        `Model ${m.name} · version ${m.version} · inputs: ${page.inputs.join(", ")} · ` +
        `outputs: ${page.outputs.join(", ")} · time unit ${m.time_unit} s`;
      document.body.dataset.model = m.name;
      buildLegend("legend-inputs", page.inputs);
      buildLegend("legend-outputs", page.outputs);
      queueDraw();
    } catch (err) {
      el.textContent = `Could not reach the service: ${err}`;
    }
  }

  function buildLegend(id, names) {
    const ul = $(id);
    ul.replaceChildren();
    names.forEach((name, i) => {
      const li = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = COLORS[i % COLORS.length];
      li.append(swatch, document.createTextNode(name));
      ul.append(li);
    });
  }

  // -- predictions -------------------------------------------------------------------------
  function asList(values, names) {
    if (Array.isArray(values)) return values.map(Number);
    if (values && typeof values === "object") {
      if (names.length === 0) names.push(...Object.keys(values));
      return names.map((n) => Number(values[n]));
    }
    return [];
  }

  function topOf(y, names) {
    let best = 0;
    for (let i = 1; i < y.length; i++) if (y[i] > y[best]) best = i;
    return { name: names[best] ?? String(best), value: y[best] };
  }

  function addPrediction(p) {
    const y = asList(p.outputs, page.outputs);
    const x = asList(p.x ?? [], page.inputs);
    page.points.push({ t: Number(p.t), x, y });
    if (page.points.length > MAX_POINTS) page.points.splice(0, page.points.length - MAX_POINTS);
    page.predictions += 1;
    if (p.reset) page.resets += 1;
    const top = topOf(y, page.outputs);
    setCounts(p);
    $("latest-class").textContent = top.name;
    $("latest-prob").textContent = Number.isFinite(top.value) ? `(${top.value.toFixed(3)})` : "";
    addRow(p, top);
    queueDraw();
  }

  function addRow(p, top) {
    const tbody = $("predictions").tBodies[0];
    const tr = document.createElement("tr");
    const time = new Date(Number(p.t) * 1000).toISOString().replace("T", " ").replace("Z", "");
    const cells = [
      String(p.count),
      time,
      Number(p.dt).toFixed(3),
      top.name,
      Number.isFinite(top.value) ? top.value.toFixed(3) : "–",
      p.reset || "",
    ];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 3) td.className = "top-output";
      tr.append(td);
    });
    tbody.prepend(tr);
    while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(-1);
  }

  function clearData() {
    page.points = [];
    page.predictions = 0;
    page.resets = 0;
    $("predictions").tBodies[0].replaceChildren();
    setCounts(null);
    queueDraw();
  }

  // -- charts ------------------------------------------------------------------------------
  function queueDraw() {
    if (page.drawQueued) return;
    page.drawQueued = true;
    requestAnimationFrame(() => {
      page.drawQueued = false;
      drawChart($("chart-inputs"), "x", page.inputs.length, false);
      drawChart($("chart-outputs"), "y", page.outputs.length, true);
    });
  }

  function drawChart(canvas, key, series, unitRange) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const pad = { l: 52, r: 28, t: 10, b: 26 };
    const pw = w - pad.l - pad.r;
    const ph = h - pad.t - pad.b;
    const pts = page.points.filter((p) => p[key].length > 0);
    ctx.font = "12px system-ui, sans-serif";
    ctx.fillStyle = "#4b5563";
    if (pts.length === 0) {
      ctx.fillText("waiting for predictions…", pad.l + 8, pad.t + ph / 2);
      return;
    }
    const t1 = Math.max(...pts.map((p) => p.t));
    const t0 = Math.min(...pts.map((p) => p.t), t1 - 1);
    let lo = 0;
    let hi = 1;
    const all = pts.flatMap((p) => p[key]).filter(Number.isFinite);
    const inUnit = all.every((v) => v >= 0 && v <= 1);
    if (!(unitRange && inUnit) && all.length) {
      lo = Math.min(...all);
      hi = Math.max(...all);
      const margin = (hi - lo) * 0.08 || 1;
      lo -= margin;
      hi += margin;
    }
    const X = (t) => pad.l + ((t - t0) / (t1 - t0)) * pw;
    const Y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * ph;

    // grid and axes
    ctx.strokeStyle = "#e5e7eb";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const v = lo + ((hi - lo) * i) / 4;
      const y = Y(v);
      ctx.beginPath();
      ctx.moveTo(pad.l, y);
      ctx.lineTo(pad.l + pw, y);
      ctx.stroke();
      ctx.fillText(Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2), pad.l - 6, y);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const span = t1 - t0;
    for (let i = 0; i <= 4; i++) {
      const t = t0 + (span * i) / 4;
      ctx.fillText(`${(t - t1).toFixed(span < 4 ? 2 : 1)} s`, X(t), pad.t + ph + 6);
    }

    // one line per series, a dot at every event (irregular spacing shows)
    for (let s = 0; s < series; s++) {
      ctx.strokeStyle = COLORS[s % COLORS.length];
      ctx.fillStyle = ctx.strokeStyle;
      ctx.lineWidth = 1.6;
      ctx.beginPath();
      let started = false;
      for (const p of pts) {
        const v = p[key][s];
        if (!Number.isFinite(v)) continue;
        if (started) ctx.lineTo(X(p.t), Y(v));
        else ctx.moveTo(X(p.t), Y(v));
        started = true;
      }
      ctx.stroke();
      if (pts.length <= 150) {
        for (const p of pts) {
          const v = p[key][s];
          if (!Number.isFinite(v)) continue;
          ctx.beginPath();
          ctx.arc(X(p.t), Y(v), 2, 0, 2 * Math.PI);
          ctx.fill();
        }
      }
    }
  }

  // -- the live feed -----------------------------------------------------------------------
  function liveUrl() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = page.token ? `?token=${encodeURIComponent(page.token)}` : "";
    return `${scheme}://${location.host}/v1/streams/${encodeURIComponent(page.stream)}/live${query}`;
  }

  function connect() {
    clearTimeout(page.timer);
    if (!page.stream) {
      setStatus("idle", "enter a stream id");
      return;
    }
    page.wanted = true;
    setStatus("connecting", `connecting to ${page.stream}…`);
    let ws;
    try {
      ws = new WebSocket(liveUrl());
    } catch (err) {
      setStatus("error", `cannot open the live feed: ${err}`);
      return;
    }
    page.ws = ws;
    ws.onmessage = (event) => {
      if (page.ws !== ws) return;
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      if (msg.type === "subscribed") {
        page.retry = 0;
        setStatus("subscribed", `subscribed to ${msg.stream_id} (model ${msg.model})`);
      } else if (msg.type === "prediction" && msg.prediction) {
        addPrediction(msg.prediction);
      }
    };
    ws.onclose = (event) => {
      if (page.ws !== ws) return;
      page.ws = null;
      if (event.code === POLICY_VIOLATION) {
        page.wanted = false;
        setStatus("refused", `refused: ${event.reason || "policy violation"}`);
      } else if (!page.wanted) {
        setStatus("closed", "disconnected");
      } else {
        const delay = Math.min(MAX_RETRY_MS, 500 * 2 ** page.retry++);
        setStatus("reconnecting", `connection closed (${event.code}); retrying in ${(delay / 1000).toFixed(1)} s`);
        page.timer = setTimeout(connect, delay);
      }
    };
  }

  function disconnect() {
    page.wanted = false;
    clearTimeout(page.timer);
    const ws = page.ws;
    page.ws = null;
    if (ws) ws.close(1000, "stopped");
    setStatus("closed", "disconnected");
  }

  // -- the form ----------------------------------------------------------------------------
  function start() {
    const query = new URLSearchParams(location.search);
    page.stream = (query.get("stream") || "").trim();
    page.token = query.get("token") || "";
    $("stream").value = page.stream;
    $("token").value = page.token;

    $("connect").addEventListener("submit", (event) => {
      event.preventDefault();
      const stream = $("stream").value.trim();
      const token = $("token").value;
      const tokenChanged = token !== page.token;
      if (stream !== page.stream) clearData();
      disconnect();
      page.stream = stream;
      page.token = token;
      const url = new URL(location.href);
      url.searchParams.set("stream", stream);
      if (url.searchParams.get("token") !== token) url.searchParams.delete("token");
      history.replaceState(null, "", url);
      if (tokenChanged) loadModel();
      connect();
    });
    $("disconnect").addEventListener("click", disconnect);
    window.addEventListener("resize", queueDraw);

    loadModel();
    setCounts(null);
    queueDraw();
    if (page.stream) connect();
    else setStatus("idle", "enter a stream id");
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
