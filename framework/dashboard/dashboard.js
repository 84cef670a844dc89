// The dashboard's script: polls the framework API once a second and renders the cluster, the vPools, the vDisks
// with their live IOPS and bandwidth (rates from the engine counters of GET /api/vdisks/:name), a
// 60-second IOPS chart of the selected vDisk, its snapshots (create, clone, rollback, delete) and the
// tasks. Plain DOM and canvas: no framework, no build step, nothing fetched from outside.
const POLL_INTERVAL_MS = 1000;
const CHART_SECONDS = 60;

const state = {
  selected: undefined,
  /** Per vDisk: the last stats sample and the rate history [{t, readIops, writeIops}]. */
  samples: new Map(),
  busy: false,
};

const byId = (id) => document.getElementById(id);

function showMessage(text, kind = "error") {
  const box = byId("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = false;
  clearTimeout(showMessage.timer);
  showMessage.timer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 10_000 : 4_000);
}

/** The bearer token of this browser tab (POST /api/oauth2/token); gone when the tab closes. */
const TOKEN_KEY = "ovs-token";

function showLogin(show) {
  byId("login-form").hidden = !show;
  document.body.classList.toggle("logged-out", show);
}

/** Calls the framework API; throws an Error with the API's message on a failure status. A 401 asks for a login. */
async function api(method, path, body) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`/api${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  const parsed = text.length === 0 ? undefined : JSON.parse(text);
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(true);
  }
  if (!response.ok) throw new Error(parsed?.error?.message ?? `HTTP ${response.status}`);
  return parsed;
}

byId("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  void (async () => {
    try {
      const issued = await api("POST", "/oauth2/token", { grant_type: "password", username: byId("login-user").value, password: byId("login-password").value });
      sessionStorage.setItem(TOKEN_KEY, issued.access_token);
      byId("login-password").value = "";
      showLogin(false);
      showMessage(`logged in (${issued.scope})`, "info");
      await refresh();
    } catch (error) {
      showMessage(error.message);
    }
  })();
});

function formatBytes(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

/** Rates since the previous sample of this vDisk (0 on the first one or after a counter reset). */
function updateRates(name, stats, nowMs) {
  const entry = state.samples.get(name) ?? { last: undefined, history: [] };
  let rates = { readIops: 0, writeIops: 0, bytesPerSecond: 0 };
  const last = entry.last;
  if (last !== undefined && nowMs > last.t && stats.readOps >= last.stats.readOps && stats.writeOps >= last.stats.writeOps) {
    const seconds = (nowMs - last.t) / 1000;
    rates = {
      readIops: (stats.readOps - last.stats.readOps) / seconds,
      writeIops: (stats.writeOps - last.stats.writeOps) / seconds,
      bytesPerSecond: (stats.readBytes - last.stats.readBytes + stats.writeBytes - last.stats.writeBytes) / seconds,
    };
  }
  entry.last = { t: nowMs, stats };
  entry.history.push({ t: nowMs, readIops: rates.readIops, writeIops: rates.writeIops });
  while (entry.history.length > 0 && nowMs - entry.history[0].t > CHART_SECONDS * 1000) entry.history.shift();
  state.samples.set(name, entry);
  return rates;
}

function renderOverview(health, vdiskCount) {
  const status = byId("cluster-status");
  status.dataset.status = health?.status ?? "down";
  status.textContent = health === undefined ? "framework unreachable" : health.status;
  const storagedriver = health?.storagedrivers?.[0];
  byId("vpool-name").textContent = storagedriver?.vpool ?? "–";
  byId("storagedriver-status").textContent = storagedriver === undefined ? "–"
    : `${storagedriver.status}${storagedriver.health?.pid === undefined ? "" : ` (pid ${storagedriver.health.pid})`}`;
  byId("backend").textContent = storagedriver?.health?.backend ?? "–";
  byId("vdisk-count").textContent = vdiskCount === undefined ? "–" : String(vdiskCount);
  byId("uptime").textContent = health === undefined ? "–" : `${health.uptimeSeconds} s`;
}

function renderBackend(backend) {
  if (backend === undefined) {
    byId("backend-summary").textContent = "backend unreachable";
    byId("asd-rows").replaceChildren();
    return;
  }
  const asds = backend.asds ?? [];
  const up = asds.filter((asd) => asd.health === "up").length;
  byId("backend-summary").textContent = backend.proxyUrl === undefined ? backend.type
    : `Alba (${backend.type}): proxy ${backend.proxyUrl}, ${up} of ${asds.length} ASDs up`;
  byId("asd-rows").replaceChildren(...asds.map((asd) => {
    const tr = document.createElement("tr");
    tr.dataset.asd = asd.asdId;
    tr.dataset.health = asd.health;
    const fill = document.createElement("td");
    if (asd.capacityBytes > 0) {
      const bar = document.createElement("span");
      bar.className = "fill";
      const level = document.createElement("span");
      level.style.width = `${Math.min(100, (100 * asd.usedBytes) / asd.capacityBytes).toFixed(1)}%`;
      bar.append(level);
      fill.append(bar, formatBytes(asd.usedBytes));
    } else {
      fill.textContent = "–";
    }
    tr.append(cell(asd.asdId.slice(0, 8)), cell(asd.nodeId), cell(asd.health), fill);
    return tr;
  }));
}

function renderVpools(vpools) {
  byId("vpool-rows").replaceChildren(...vpools.map((vpool) => {
    const tr = document.createElement("tr");
    tr.dataset.vpool = vpool.name;
    const driver = vpool.storagedrivers[0];
    tr.append(cell(`${vpool.name}${vpool.primary ? " (first)" : ""}`), cell(vpool.backend), cell(driver?.status ?? "–"),
      cell(driver?.nbdUrl ?? "–"), cell(driver?.iscsiUrl ?? "–"), cell(formatBytes(vpool.writeBufferSizeBytes)), cell(formatBytes(vpool.readCacheSizeBytes)));
    return tr;
  }));
}

function renderVdisks(rows) {
  const body = byId("vdisk-rows");
  body.replaceChildren(...rows.map(({ info, stats, rates }) => {
    const tr = document.createElement("tr");
    tr.dataset.vdisk = info.name;
    if (info.name === state.selected) tr.className = "selected";
    tr.append(cell(info.name), cell(info.vpool ?? "–"), cell(formatBytes(info.sizeBytes)), cell(info.template ? `${info.state} (template)` : info.state),
      cell(String(info.snapshotCount)), cell(Math.round(rates.readIops).toString()), cell(Math.round(rates.writeIops).toString()),
      cell((rates.bytesPerSecond / 1048576).toFixed(1)), cell(stats === undefined ? "–" : formatBytes(stats.notUploadedBytes)));
    tr.addEventListener("click", () => { state.selected = info.name; void refresh(); });
    return tr;
  }));
}

function renderChart(name) {
  const canvas = byId("iops-chart");
  const history = state.samples.get(name)?.history ?? [];
  const context = canvas.getContext("2d");
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  const peak = Math.max(10, ...history.map((point) => Math.max(point.readIops, point.writeIops)));
  context.strokeStyle = "#d8dde5";
  context.fillStyle = "#6b7585";
  context.font = "11px system-ui";
  for (const fraction of [0.25, 0.5, 0.75, 1]) {
    const y = height - fraction * (height - 14);
    context.beginPath(); context.moveTo(0, y); context.lineTo(width, y); context.stroke();
    context.fillText(String(Math.round(peak * fraction)), 4, y + 11);
  }
  const nowMs = history.at(-1)?.t ?? Date.now();
  const draw = (key, color) => {
    context.strokeStyle = color;
    context.lineWidth = 2;
    context.beginPath();
    history.forEach((point, index) => {
      const x = width - ((nowMs - point.t) / (CHART_SECONDS * 1000)) * width;
      const y = height - (point[key] / peak) * (height - 14);
      if (index === 0) context.moveTo(x, y); else context.lineTo(x, y);
    });
    context.stroke();
  };
  draw("readIops", "#2da44e");
  draw("writeIops", "#cf5f1b");
  // The points, for tests and for anyone who wants the numbers behind the picture.
  canvas.dataset.points = JSON.stringify(history.map((point) => Math.round(point.readIops + point.writeIops)));
}

function renderSnapshots(name, snapshots) {
  byId("snapshot-rows").replaceChildren(...snapshots.map((snapshot) => {
    const tr = document.createElement("tr");
    tr.dataset.snapshot = snapshot.name;
    const actions = document.createElement("td");
    const button = (label, action) => {
      const element = document.createElement("button");
      element.type = "button";
      element.textContent = label;
      element.dataset.action = label.toLowerCase();
      element.addEventListener("click", () => void act(action));
      actions.append(element, " ");
    };
    button("Clone", async () => {
      const clone = prompt(`Name of the clone of ${name}@${snapshot.name}`);
      if (!clone) return;
      await api("POST", "/vdisks", { name: clone, parent: `${name}@${snapshot.name}` });
      showMessage(`cloned ${name}@${snapshot.name} as ${clone}`, "info");
    });
    button("Rollback", async () => {
      if (!confirm(`Roll ${name} back to ${snapshot.name}? Later writes and snapshots are lost.`)) return;
      await api("POST", `/vdisks/${encodeURIComponent(name)}/rollback`, { snapshot: snapshot.name });
      showMessage(`rolled ${name} back to ${snapshot.name}`, "info");
    });
    button("Delete", async () => {
      if (!confirm(`Delete snapshot ${snapshot.name} of ${name}?`)) return;
      await api("DELETE", `/vdisks/${encodeURIComponent(name)}/snapshots/${encodeURIComponent(snapshot.name)}`);
      showMessage(`deleted snapshot ${snapshot.name}`, "info");
    });
    tr.append(cell(snapshot.name), cell(new Date(snapshot.createdAt).toLocaleString()), cell(snapshot.synced ? "yes" : "not yet"),
      cell(snapshot.clones.length === 0 ? "–" : snapshot.clones.join(", ")), actions);
    return tr;
  }));
}

function renderTasks(tasks) {
  byId("task-rows").replaceChildren(...tasks.slice(-20).reverse().map((task) => {
    const tr = document.createElement("tr");
    const progress = task.progress === undefined ? "–"
      : `${task.progress.phase}${task.progress.total > 0 ? ` ${Math.round((100 * task.progress.done) / task.progress.total)}%` : ""}`;
    tr.append(cell(task.id), cell(task.kind), cell(task.vdisk ?? `vPool ${task.vpool ?? "–"}`), cell(task.state), cell(progress));
    return tr;
  }));
}

/** Runs a user action, reports its error, and refreshes. */
async function act(action) {
  try {
    await action();
  } catch (error) {
    showMessage(error.message);
  }
  await refresh();
}

async function refresh() {
  if (state.busy) return;
  state.busy = true;
  try {
    const health = await api("GET", "/health").catch(() => undefined);
    let vdisks = [];
    try {
      vdisks = (await api("GET", "/vdisks")).vdisks;
    } catch (error) {
      if (!byId("login-form").hidden) return; // not logged in: the form is up
      showMessage(error.message);
    }
    renderOverview(health, health === undefined ? undefined : vdisks.length);
    renderBackend(await api("GET", "/backend").catch(() => undefined));
    const vpools = await api("GET", "/vpools").catch(() => undefined);
    if (vpools !== undefined) renderVpools(vpools.vpools);
    if (state.selected === undefined || !vdisks.some((vdisk) => vdisk.name === state.selected)) state.selected = vdisks[0]?.name;
    const nowMs = Date.now();
    const rows = await Promise.all(vdisks.map(async (info) => {
      const detail = await api("GET", `/vdisks/${encodeURIComponent(info.name)}`).catch(() => undefined);
      const stats = detail?.stats;
      return { info, stats, rates: stats === undefined ? { readIops: 0, writeIops: 0, bytesPerSecond: 0 } : updateRates(info.name, stats, nowMs) };
    }));
    renderVdisks(rows);
    const selected = rows.find((row) => row.info.name === state.selected);
    byId("selected-name").textContent = state.selected ?? "–";
    const iops = selected === undefined ? 0 : Math.round(selected.rates.readIops + selected.rates.writeIops);
    byId("iops-now").textContent = String(iops);
    byId("iops-now").dataset.iops = String(iops);
    byId("bandwidth-now").textContent = `${((selected?.rates.bytesPerSecond ?? 0) / 1048576).toFixed(1)} MiB/s`;
    if (state.selected !== undefined) {
      renderChart(state.selected);
      const snapshots = await api("GET", `/vdisks/${encodeURIComponent(state.selected)}/snapshots`).catch(() => ({ snapshots: [] }));
      renderSnapshots(state.selected, snapshots.snapshots);
    }
    renderTasks((await api("GET", "/tasks").catch(() => ({ tasks: [] }))).tasks);
  } finally {
    state.busy = false;
  }
}

byId("snapshot-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = byId("snapshot-name");
  const name = input.value.trim();
  const vdisk = state.selected;
  if (name === "" || vdisk === undefined) return;
  void act(async () => {
    await api("POST", `/vdisks/${encodeURIComponent(vdisk)}/snapshots`, { name });
    input.value = "";
    showMessage(`created snapshot ${name} of ${vdisk}`, "info");
  });
});

void refresh();
setInterval(() => void refresh(), POLL_INTERVAL_MS);
