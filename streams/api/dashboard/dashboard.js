// The rtba dashboard: plots from the read API, refreshed every few seconds, and the live
// feed of segment changes, churn alerts and audience changes over server-sent events (/events/stream).
// Sizes come from the API's samples (/dashboard/history), never from /segments, which
// walks every customer: an open page costs the API two cheap reads a refresh.
"use strict";

const REFRESH_MS = 3000;
const FEED_SHOWN = 100;
const PLOT = { displaylogo: false, responsive: true };
// Axis types set, never guessed: plotly reads a column of small counts as years.
const LAYOUT = {
  margin: { l: 50, r: 20, t: 10, b: 40 }, legend: { orientation: "h", y: -0.2 },
  xaxis: { type: "date" }, yaxis: { type: "linear", rangemode: "tozero" },
};
const counts = { rfm: 0, cluster: 0, churn: 0, audience: 0 };
let clusterLabels = {};

const $ = (id) => document.getElementById(id);

// With RTBA_API_TOKEN set, the page is opened once as /#token=<token>: the fragment never
// reaches a server or its logs; the token stays in this tab's sessionStorage.
const given = new URLSearchParams(location.hash.slice(1)).get("token");
if (given) {
  sessionStorage.setItem("rtba-token", given);
  history.replaceState(null, "", location.pathname);
}
const auth = () => {
  const token = sessionStorage.getItem("rtba-token");
  return token ? { Authorization: `Bearer ${token}` } : {};
};
const empty = (id, text) => Plotly.react(id, [], {
  xaxis: { visible: false }, yaxis: { visible: false },
  annotations: [{ text, showarrow: false, font: { size: 14, color: "#888" } }],
}, PLOT);
const number = (n) => (n === null || n === undefined ? "-" : Math.round(n).toLocaleString("en"));

async function getJson(path) {
  const answer = await fetch(path, { headers: auth() });
  if (answer.status === 401) throw new Error("a token is needed: open this page as /#token=<RTBA_API_TOKEN>");
  if (!answer.ok) throw new Error(`${path}: ${answer.status}`);
  return answer.json();
}

function clusterName(id) {
  const label = clusterLabels[id];
  return label ? `${id} · ${label}` : `cluster ${id}`;
}

function drawNow(sample, clusters) {
  $("customers").textContent = number(sample.customers);
  $("as-of").textContent = sample.as_of.slice(0, 16).replace("T", " ");
  const names = Object.keys(sample.segments);
  const sizes = names.map((name) => sample.segments[name]);
  Plotly.react("segments-now", [{
    type: "bar", orientation: "h", x: sizes, y: names,
    text: sizes.map(number), textposition: "auto",
    hovertemplate: "%{y}: %{x} customers<extra></extra>", marker: { color: "#3b6fb6" },
  }], { ...LAYOUT, margin: { ...LAYOUT.margin, l: 140 }, xaxis: { type: "linear", rangemode: "tozero" },
       yaxis: { type: "category", autorange: "reversed" } }, PLOT);

  clusterLabels = Object.fromEntries(clusters.map((c) => [String(c.id), c.label]));
  const size = (c) => sample.clusters[String(c.id)] || 0;
  const live = clusters.filter((c) => size(c) > 0);
  if (!live.length) return empty("cluster-profiles", "no cluster snapshot yet: the learner is warming up");
  const features = Object.keys(live[0].standardised);
  Plotly.react("cluster-profiles", [{
    type: "heatmap", x: features, y: live.map((c) => `${clusterName(c.id)} (${number(size(c))})`),
    z: live.map((c) => features.map((f) => c.standardised[f])),
    customdata: live.map((c) => features.map((f) => c.centroid[f])),
    hovertemplate: "%{y}<br>%{x}: %{customdata:.2f} (%{z:.1f} sd)<extra></extra>",
    colorscale: "RdBu", reversescale: true, zmid: 0,
  }], { ...LAYOUT, margin: { ...LAYOUT.margin, b: 110 },
       xaxis: { type: "category" }, yaxis: { type: "category", automargin: true } }, PLOT);
}

function drawHistory(history) {
  const samples = history.samples;
  if (!samples.length) {
    for (const id of ["segments-time", "clusters-time", "throughput"]) empty(id, "no sample yet");
    return;
  }
  const at = samples.map((s) => new Date(s.t));
  const series = (pick, names, label) => names.map((name) => ({
    type: "scatter", mode: "lines", name: label(name), x: at, y: samples.map((s) => pick(s)[name] || 0),
  }));
  const segments = Object.keys(samples[samples.length - 1].segments);
  Plotly.react("segments-time", series((s) => s.segments, segments, (n) => n), LAYOUT, PLOT);
  const clusters = [...new Set(samples.flatMap((s) => Object.keys(s.clusters)))].sort((a, b) => a - b);
  if (clusters.length) {
    Plotly.react("clusters-time", series((s) => s.clusters, clusters, clusterName), LAYOUT, PLOT);
  } else {
    empty("clusters-time", "no cluster snapshot yet: the learner is warming up");
  }

  const rates = samples.slice(1).map((s, i) => (s.records - samples[i].records) / Math.max((s.t - samples[i].t) / 1000, 1e-3));
  Plotly.react("throughput", [
    { type: "scatter", mode: "lines", name: "events/s", x: at.slice(1), y: rates },
    { type: "scatter", mode: "lines", name: "consumer lag", x: at, y: samples.map((s) => s.lag), yaxis: "y2" },
  ], { ...LAYOUT, margin: { ...LAYOUT.margin, r: 60 },
       yaxis: { type: "linear", title: { text: "events/s" }, rangemode: "tozero" },
       yaxis2: { type: "linear", title: { text: "records behind" }, overlaying: "y", side: "right",
                 rangemode: "tozero" } }, PLOT);
  const last = samples[samples.length - 1];
  $("rate").textContent = rates.length ? number(rates[rates.length - 1]) : "-";
  $("lag").textContent = number(last.lag);
  $("dlq").textContent = number(last.dlq);
}

function drawAudiences(audiences) {
  const b = audiences.backfill;
  $("audience-backfill").textContent = b.state === "running"
    ? `· backfill ${number(b.done)} of ${number(b.total)}`
    : (b.state === "waiting" ? "· backfill waiting" : "");
  const rows = audiences.audiences;
  if (!rows.length) return empty("audiences", "no audiences defined: rtba audience apply FILE");
  Plotly.react("audiences", [{
    type: "bar", orientation: "h", x: rows.map((r) => r.members), y: rows.map((r) => r.id),
    text: rows.map((r) => number(r.members)), textposition: "auto", customdata: rows.map((r) => r.name),
    hovertemplate: "%{customdata}: %{x} customers<extra></extra>", marker: { color: "#6b8e23" },
  }], { ...LAYOUT, margin: { ...LAYOUT.margin, l: 160 }, xaxis: { type: "linear", rangemode: "tozero" },
       yaxis: { type: "category", autorange: "reversed" } }, PLOT);
}

function describe(item) {
  const e = item.event;
  if (item.kind === "churn") {
    return `${e.customer_id} churn risk ${e.churn_risk.toFixed(2)}, ${Math.round(e.recency_days)} days quiet`;
  }
  if (item.kind === "audience") {
    return `${e.customer_id} ${e.change === "enter" ? "entered" : "left"} ${e.audience} (${e.reason})`;
  }
  const name = (segment) => (item.kind === "cluster" ? clusterName(segment) : segment);
  return `${e.customer_id} ${e.from === null ? "(new)" : name(e.from)} → ${name(e.to)} (${e.reason})`;
}

function feedLine(item) {
  const e = item.event;
  const li = document.createElement("li");
  li.className = item.kind;
  li.dataset.kind = item.kind;
  li.dataset.customer = e.customer_id;
  const when = document.createElement("span");
  when.className = "when";
  when.textContent = e.at.slice(0, 16).replace("T", " ");
  const kind = document.createElement("span");
  kind.className = "kind";
  kind.textContent = item.kind;
  li.append(when, kind, document.createTextNode(describe(item)));  // text nodes: ids are never markup
  return li;
}

function show(item) {
  counts[item.kind] = (counts[item.kind] || 0) + 1;
  const list = $("feed");
  list.prepend(feedLine(item));
  // Full: the oldest segment change goes first. A re-scoring tick sends hundreds of them
  // around a few churn alerts, which would otherwise scroll out of view within a second.
  while (list.children.length > FEED_SHOWN) {
    const routine = [...list.children].reverse().find((li) => !li.classList.contains("churn"));
    (routine || list.lastChild).remove();
  }
  $("feed-counts").textContent =
    `· rfm ${counts.rfm} · cluster ${counts.cluster} · churn ${counts.churn} · audience ${counts.audience}`;
}

// Server-sent events read with fetch, not EventSource, which cannot send the token; it
// resumes the same way, with Last-Event-ID after the last event shown.
async function follow() {
  let last = 0;
  for (;;) {
    try {
      const headers = { ...auth(), ...(last ? { "Last-Event-ID": String(last) } : {}) };
      const answer = await fetch("/events/stream", { headers });
      if (!answer.ok) throw new Error(answer.status === 401 ? "token needed" : `${answer.status}`);
      $("feed-status").textContent = "live";
      const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const lines = buffer.slice(0, end).split("\n");
          buffer = buffer.slice(end + 2);
          const data = lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (!data) continue;  // a keepalive comment
          const item = JSON.parse(data);
          last = item.seq;
          show(item);
        }
      }
      $("feed-status").textContent = "reconnecting";
    } catch (error) {
      $("feed-status").textContent = error.message === "token needed" ? "token needed" : "reconnecting";
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

// The churn model in force, and why the latest refit was not put in force or CLV is off
// (a fit that did not converge is never published: the previous model stays).
function drawChurnModel(churn) {
  const problems = [churn.last_error && `last refit: ${churn.last_error.reason}`, churn.spend_error]
    .filter(Boolean);
  const cell = $("churn-model");
  cell.textContent = (churn.version ? `v${churn.version}` : "none yet") + (problems.length ? " ⚠" : "");
  cell.title = problems.join("\n");
  $("churn-problem").textContent = problems.join(" · ");
}

async function refresh() {
  try {
    const [history, clusters, audiences, models] = await Promise.all([
      getJson("/dashboard/history?limit=360"), getJson("/clusters"), getJson("/audiences"),
      getJson("/models")]);
    const samples = history.samples;
    if (samples.length) drawNow(samples[samples.length - 1], clusters.clusters);
    drawHistory(history);
    drawAudiences(audiences);
    drawChurnModel(models.churn);
  } catch (error) {
    $("as-of").textContent = `API: ${error.message}`;
  }
}

async function start() {
  $("namespace").textContent = (await getJson("/health")).namespace;
  await refresh();  // the cluster labels first: the feed's backlog names clusters
  follow();
  setInterval(refresh, REFRESH_MS);
}

start();
