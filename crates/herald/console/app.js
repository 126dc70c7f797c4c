// Herald's web console: finds a message (by id) or a receiver's messages and shows the timeline,
// polls today's counters by channel and account into rates, ratios and a chart, and runs the
// reconciliation query. It speaks only to this server's /graphql, with the API key the user
// gives (in the URL fragment `#key=…` or the form), kept in this tab's sessionStorage.
// Everything from the API is put on the page as text, never as HTML.
"use strict";

(() => {
  const POLL_MS = 5000;
  /** Polls kept for the chart: five minutes. */
  const HISTORY = 60;
  const KEY_STORE = "herald.console.key";
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const COUNTERS = [
    "accepted", "deduplicated", "shielded", "discarded", "deferred", "dispatched",
    "dispatchFailed", "failed", "delivered", "undelivered", "clicked", "recalled",
  ];

  const MESSAGE = `query($id: ID!) { message(id: $id) {
    asOf { caughtUp behind }
    message { id status channel msgType receiver templateId requestId account supplier
      supplierMessageId attempts clicks acceptedAt updatedAt timeline { kind at detail } } } }`;
  const RECEIVER = `query($receiver: String!, $first: Int!) {
    messages(filter: { receiver: $receiver }, first: $first) {
      asOf { caughtUp behind } pageInfo { hasNextPage }
      nodes { id status channel account attempts acceptedAt templateId } } }`;
  const STATS = `query($day: Date!) { stats(filter: { from: $day, to: $day }) {
    asOf { caughtUp behind }
    rows { channel account ${COUNTERS.join(" ")} } } }`;
  const RECONCILIATION = `query($account: String!, $date: Date!, $zone: String!, $billed: Int,
      $tolerance: Float!) {
    reconciliation(account: $account, date: $date, zone: $zone, billed: $billed,
        tolerance: $tolerance) {
      account date zone dispatched delivered undelivered pending withoutSupplierId billed
      gapPercent flagged asOf { caughtUp behind }
      supplierMessageIds(first: 200) { ids pageInfo { hasNextPage } } } }`;

  const $ = (id) => document.getElementById(id);

  /** An element with attributes (`class`, `data-*`…) and children (nodes or text). */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : String(child));
      }
    }
    return node;
  }

  function svg(tag, attrs = {}) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    return node;
  }

  const today = () => new Date().toISOString().slice(0, 10);
  const time = (iso) => el("time", { datetime: iso }, iso.replace("T", " ").replace(/\.\d+/, ""));

  /** `part / (part + rest)` as `97.5 %`, or `—` with nothing to divide. */
  function ratio(part, rest) {
    const whole = part + rest;
    return whole > 0 ? { value: part / whole, text: `${((100 * part) / whole).toFixed(1)} %` }
      : { value: null, text: "—" };
  }

  // ---- Errors ------------------------------------------------------------------------------

  /** The current error of each part of the page, shown together in `#error`. */
  const errors = new Map();

  function renderErrors() {
    const box = $("error");
    box.replaceChildren(...[...errors].map(([source, message]) =>
      el("p", { "data-source": source }, `${source}: ${message}`)));
    box.hidden = errors.size === 0;
  }

  function fail(source, error) {
    errors.set(source, error instanceof Error ? error.message : String(error));
    renderErrors();
  }

  function ok(source) {
    if (errors.delete(source)) renderErrors();
  }

  // ---- The API key and GraphQL ------------------------------------------------------------

  const key = () => sessionStorage.getItem(KEY_STORE) || "";

  function setKey(value) {
    if (value) sessionStorage.setItem(KEY_STORE, value);
    else sessionStorage.removeItem(KEY_STORE);
    const state = $("key-state");
    state.dataset.state = value ? "set" : "none";
    state.textContent = value ? "key set for this tab" : "no key";
    errors.clear();
    renderErrors();
  }

  class ApiError extends Error {
    constructor(message, code) {
      super(message);
      this.code = code;
    }
  }

  async function gql(query, variables) {
    const apiKey = key();
    if (!apiKey) {
      throw new ApiError("no API key: enter one above, or open /console#key=…", "NO_KEY");
    }
    let response;
    try {
      response = await fetch("/graphql", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${apiKey}` },
        body: JSON.stringify({ query, variables }),
        cache: "no-store",
        credentials: "omit",
      });
    } catch (e) {
      throw new ApiError(`Herald cannot be reached (${e.message})`, "NETWORK");
    }
    let body;
    try {
      body = await response.json();
    } catch {
      throw new ApiError(`Herald answered HTTP ${response.status} without JSON`, "HTTP");
    }
    if (body && Array.isArray(body.errors) && body.errors.length > 0) {
      const first = body.errors[0];
      const ext = first.extensions || {};
      const codes = [ext.code, ext.reason].filter(Boolean).join(" / ");
      throw new ApiError(codes ? `${first.message} (${codes})` : first.message, ext.code);
    }
    if (!response.ok || !body || !body.data) {
      throw new ApiError(`Herald answered HTTP ${response.status}`, "HTTP");
    }
    return body.data;
  }

  // ---- Find: a message and its timeline, or a receiver's messages --------------------------

  /** Bumped by each search, so an older answer arriving late is dropped. */
  let findGeneration = 0;

  function findStatus(text) {
    $("find-status").textContent = text;
  }

  async function find(text) {
    const query = text.trim();
    if (!query) return;
    $("find-input").value = query;
    const generation = ++findGeneration;
    if (UUID.test(query)) {
      $("receiver").hidden = true;
      await showMessage(query.toLowerCase(), generation);
    } else {
      $("message").hidden = true;
      await showReceiver(query, generation);
    }
  }

  async function showMessage(id, generation, attempt = 0) {
    findStatus(`Looking up message ${id}…`);
    let answer;
    try {
      answer = (await gql(MESSAGE, { id })).message;
      ok("find");
    } catch (e) {
      if (generation === findGeneration) {
        fail("find", e);
        findStatus("");
      }
      return;
    }
    if (generation !== findGeneration) return;
    if (!answer.message) {
      // The trace follows the log a moment behind: a message just sent may not be in it yet.
      if (!answer.asOf.caughtUp && attempt < 10) {
        findStatus(`Not in the trace yet (${answer.asOf.behind} events behind); retrying…`);
        setTimeout(() => showMessage(id, generation, attempt + 1), 1000);
        return;
      }
      $("message").hidden = true;
      findStatus(`No message ${id} for this key's tenant.`);
      return;
    }
    renderMessage(answer.message);
    findStatus(answer.asOf.caughtUp ? "" : `The trace is ${answer.asOf.behind} events behind.`);
  }

  function renderMessage(message) {
    $("message-id").textContent = message.id;
    const fields = [
      ["status", "Status"], ["channel", "Channel"], ["msgType", "Type"], ["receiver", "Receiver"],
      ["account", "Account"], ["supplier", "Supplier"], ["supplierMessageId", "Supplier id"],
      ["attempts", "Attempts"], ["clicks", "Clicks"], ["templateId", "Template"],
      ["requestId", "Request"], ["acceptedAt", "Accepted"], ["updatedAt", "Updated"],
    ];
    $("message-summary").replaceChildren(...fields.flatMap(([field, label]) => {
      const value = message[field];
      return [
        el("dt", {}, label),
        el("dd", { "data-field": field }, value === null || value === undefined ? "—" : value),
      ];
    }));
    $("timeline").replaceChildren(...message.timeline.map((step) => {
      let detail = JSON.stringify(step.detail);
      if (detail === "{}" || detail === "null") detail = "";
      if (detail.length > 400) detail = `${detail.slice(0, 400)}…`;
      return el("li", { "data-kind": step.kind, class: `step step-${step.kind.toLowerCase()}` },
        time(step.at), " ", el("span", { class: "kind" }, step.kind),
        detail ? el("code", { class: "detail" }, detail) : null);
    }));
    $("message").hidden = false;
    for (const row of $("receiver-messages").tBodies[0].rows) {
      row.classList.toggle("selected", row.dataset.id === message.id);
    }
  }

  async function showReceiver(receiver, generation) {
    findStatus(`Looking up the messages to ${receiver}…`);
    let answer;
    try {
      answer = (await gql(RECEIVER, { receiver, first: 100 })).messages;
      ok("find");
    } catch (e) {
      if (generation === findGeneration) {
        fail("find", e);
        findStatus("");
      }
      return;
    }
    if (generation !== findGeneration) return;
    $("receiver-name").textContent = receiver;
    $("receiver-messages").tBodies[0].replaceChildren(...answer.nodes.map((m) => {
      const open = el("button", { type: "button", "data-id": m.id }, m.id);
      open.addEventListener("click", () => {
        findGeneration += 1;
        showMessage(m.id, findGeneration);
      });
      return el("tr", { "data-id": m.id, "data-status": m.status },
        el("td", {}, time(m.acceptedAt)), el("td", { class: "status" }, m.status),
        el("td", {}, m.channel), el("td", {}, m.account ?? "—"), el("td", {}, m.attempts),
        el("td", {}, open));
    }));
    $("receiver-more").hidden = !answer.pageInfo.hasNextPage;
    $("receiver").hidden = false;
    const behind = answer.asOf.caughtUp ? "" : ` (the trace is ${answer.asOf.behind} events behind)`;
    findStatus(answer.nodes.length === 0
      ? `No messages to ${receiver}${behind}.`
      : `${answer.nodes.length} message(s) to ${receiver}, newest first: pick one for its timeline${behind}.`);
  }

  // ---- Rates: today's counters by channel and account, polled -------------------------------

  /** Polls of today: `{ at, day, totals: Map(key → counters) }`, oldest first. */
  let polls = [];
  let pollTimer = null;
  let pollGeneration = 0;

  const rowKey = (channel, account) => `${channel}\u0000${account}`;

  /** Sums the rows by channel and account, and by channel over its accounts (account `*`). */
  function aggregate(rows) {
    const totals = new Map();
    const add = (k, channel, account, row) => {
      let sum = totals.get(k);
      if (!sum) {
        sum = { channel, account, counts: Object.fromEntries(COUNTERS.map((c) => [c, 0])) };
        totals.set(k, sum);
      }
      for (const c of COUNTERS) sum.counts[c] += row[c];
    };
    for (const row of rows) {
      const account = row.account ?? "";
      add(rowKey(row.channel, "*"), row.channel, "*", row);
      add(rowKey(row.channel, account), row.channel, account, row);
    }
    return totals;
  }

  /** Per minute between the last two polls, or `null` without two polls of the same day. */
  function perMinute(k, counter, at = polls.length - 1) {
    const now = polls[at];
    const before = polls[at - 1];
    if (!now || !before || now.day !== before.day) return null;
    const minutes = (now.at - before.at) / 60000;
    const a = now.totals.get(k);
    const b = before.totals.get(k);
    if (!a || minutes <= 0) return null;
    const delta = a.counts[counter] - (b ? b.counts[counter] : 0);
    return delta >= 0 ? delta / minutes : null;
  }

  const rateText = (rate) => (rate === null ? "…" : rate.toFixed(1));

  function ratioBar(r) {
    const bar = svg("svg", {
      class: "bar", viewBox: "0 0 100 10", preserveAspectRatio: "none", width: 64, height: 10, role: "img",
      "aria-label": r.text, "data-ratio": r.value === null ? "" : r.value.toFixed(4),
    });
    bar.append(svg("rect", { class: "bar-back", width: 100, height: 10 }));
    if (r.value !== null) {
      bar.append(svg("rect", { class: "bar-fail", width: 100, height: 10 }));
      bar.append(svg("rect", { class: "bar-ok", width: (100 * r.value).toFixed(1), height: 10 }));
    }
    return bar;
  }

  function renderRates() {
    const latest = polls[polls.length - 1];
    const sorted = [...latest.totals.entries()].sort(([, a], [, b]) =>
      a.channel.localeCompare(b.channel)
      || (a.account === "*" ? -1 : b.account === "*" ? 1 : a.account.localeCompare(b.account)));
    const body = $("rates-table").tBodies[0];
    body.replaceChildren(...sorted.map(([k, { channel, account, counts }]) => {
      const success = ratio(counts.dispatched, counts.failed);
      const delivery = ratio(counts.delivered, counts.undelivered);
      const cell = (field, value) => el("td", { "data-field": field }, value);
      const label = account === "*" ? "all accounts" : account === "" ? "(no account yet)" : account;
      return el("tr", {
        "data-channel": channel, "data-account": account, class: account === "*" ? "total" : "account",
      },
      el("th", { scope: "row" }, account === "*" ? channel : ""),
      cell("account", label),
      cell("accepted", counts.accepted), cell("dispatched", counts.dispatched),
      cell("failed", counts.failed), cell("delivered", counts.delivered),
      cell("undelivered", counts.undelivered),
      cell("acceptedRate", rateText(perMinute(k, "accepted"))),
      cell("dispatchedRate", rateText(perMinute(k, "dispatched"))),
      cell("successRatio", success.text), cell("deliveryRatio", delivery.text),
      el("td", { "data-field": "successBar" }, ratioBar(success)));
    }));
    if (sorted.length === 0) {
      body.append(el("tr", { class: "empty" }, el("td", { colspan: 12 }, "Nothing sent today yet.")));
    }
    const accounts = new Set(sorted.map(([, t]) => t.account).filter((a) => a && a !== "*"));
    $("recon-accounts").replaceChildren(...[...accounts].sort().map((a) => el("option", { value: a })));
    $("rates-day").textContent = `(${latest.day}, UTC)`;
    renderChart();
  }

  /** One polyline per channel: dispatched per minute at each poll. */
  function renderChart() {
    const chart = $("rate-chart");
    const [width, height, pad] = [600, 160, 20];
    const channels = [...new Set(polls.flatMap((poll) =>
      [...poll.totals.values()].filter((t) => t.account === "*").map((t) => t.channel)))].sort();
    const series = channels.map((channel) => ({
      channel,
      points: polls.map((_, at) => perMinute(rowKey(channel, "*"), "dispatched", at)),
    }));
    const max = Math.max(1, ...series.flatMap((s) => s.points.filter((p) => p !== null)));
    // The polls kept span the width: the newest at the right edge.
    const x = (at) => pad + ((width - 2 * pad) * at) / Math.max(1, polls.length - 1);
    const y = (value) => height - pad - ((height - 2 * pad) * value) / max;
    chart.replaceChildren(
      svg("line", { class: "axis", x1: pad, y1: height - pad, x2: width - pad, y2: height - pad }),
      svg("line", { class: "axis", x1: pad, y1: pad, x2: pad, y2: height - pad }),
    );
    const top = svg("text", { class: "axis-label", x: pad + 4, y: pad - 6 });
    top.textContent = `${max.toFixed(1)}/min`;
    const zero = svg("text", { class: "axis-label", x: pad + 4, y: height - 6 });
    zero.textContent = `0 — the last ${polls.length} of up to ${HISTORY} polls, ${POLL_MS / 1000} s apart`;
    chart.append(top, zero);
    const legend = [];
    series.forEach(({ channel, points }, index) => {
      const shown = points.map((p, at) => (p === null ? null : [x(at), y(p)])).filter(Boolean);
      const colour = `series-${index % 6}`;
      const line = svg("polyline", {
        class: `series ${colour}`, "data-series": channel,
        points: shown.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(" "),
      });
      chart.append(line);
      for (const [px, py] of shown) {
        chart.append(svg("circle", { class: `dot ${colour}`, cx: px.toFixed(1), cy: py.toFixed(1), r: 2.5 }));
      }
      legend.push(el("li", { class: colour, "data-series": channel }, channel));
    });
    $("rate-legend").replaceChildren(...legend);
  }

  async function poll(generation) {
    if (generation !== pollGeneration) return;
    const day = today();
    try {
      const answer = (await gql(STATS, { day })).stats;
      if (generation !== pollGeneration) return;
      ok("rates");
      polls.push({ at: Date.now(), day, totals: aggregate(answer.rows) });
      polls = polls.filter((p) => p.day === day).slice(-HISTORY);
      renderRates();
      $("rates-status").textContent = `Updated ${new Date().toISOString().slice(11, 19)} UTC`
        + (answer.asOf.caughtUp ? "." : `; the statistics are ${answer.asOf.behind} events behind.`);
    } catch (e) {
      if (generation !== pollGeneration) return;
      fail("rates", e);
      // A refused key will not start working: wait for another.
      if (e.code === "UNAUTHENTICATED" || e.code === "NO_KEY") return;
    }
    pollTimer = setTimeout(() => poll(generation), POLL_MS);
  }

  function startPolling() {
    clearTimeout(pollTimer);
    pollGeneration += 1;
    polls = [];
    if (key()) poll(pollGeneration);
    else $("rates-status").textContent = "Enter an API key to see the rates.";
  }

  // ---- Reconciliation ---------------------------------------------------------------------

  async function reconcile() {
    const billed = $("recon-billed").value.trim();
    const variables = {
      account: $("recon-account").value.trim(),
      date: $("recon-date").value || today(),
      zone: $("recon-zone").value.trim() || "+00:00",
      billed: billed === "" ? null : Number(billed),
      tolerance: Number($("recon-tolerance").value || 2),
    };
    if (!variables.account) return;
    let r;
    try {
      r = (await gql(RECONCILIATION, variables)).reconciliation;
      ok("reconciliation");
    } catch (e) {
      fail("reconciliation", e);
      return;
    }
    const percent = (p) => (p === null ? "—" : `${p.toFixed(1)} %`);
    const rows = [
      ["account", "Account", r.account], ["date", "Day", r.date], ["zone", "Zone", r.zone],
      ["dispatched", "Dispatched", r.dispatched], ["delivered", "Delivered", r.delivered],
      ["undelivered", "Undelivered", r.undelivered], ["pending", "Pending receipts", r.pending],
      ["withoutSupplierId", "Without supplier id", r.withoutSupplierId],
      ["billed", "Billed", r.billed ?? "—"], ["gapPercent", "Gap", percent(r.gapPercent)],
      ["flagged", "Flagged", r.flagged === null ? "—" : r.flagged ? "FLAGGED" : "within tolerance"],
      ["asOf", "Projection", r.asOf.caughtUp ? "caught up" : `${r.asOf.behind} events behind`],
    ];
    const table = $("recon-result");
    table.tBodies[0].replaceChildren(...rows.map(([field, label, value]) =>
      el("tr", { "data-field": field }, el("th", { scope: "row" }, label), el("td", {}, value))));
    table.dataset.flagged = String(r.flagged);
    table.hidden = false;
    const ids = r.supplierMessageIds;
    $("recon-ids-count").textContent = ids.pageInfo.hasNextPage ? `${ids.ids.length}+` : ids.ids.length;
    $("recon-ids").querySelector("ol").replaceChildren(...ids.ids.map((id) => el("li", {}, id)));
    $("recon-ids").hidden = false;
  }

  // ---- Wiring -----------------------------------------------------------------------------

  /** A fragment value, percent-decoded; unlike a query string, `+` stays a plus (`+8613…`). */
  function decode(value) {
    try {
      return decodeURIComponent(value);
    } catch {
      return value;
    }
  }

  /**
   * Reads `#key=…&find=…&recon=ACCOUNT&date=…` from the URL. The key moves to sessionStorage
   * and out of the address bar, so it is not left in the browser history or a shared link.
   */
  function readFragment() {
    const parts = location.hash.slice(1).split("&").filter(Boolean);
    const params = new Map();
    for (const part of parts) {
      const at = part.indexOf("=");
      const name = decode(at < 0 ? part : part.slice(0, at));
      if (!params.has(name)) params.set(name, at < 0 ? "" : decode(part.slice(at + 1)));
    }
    const fragmentKey = (params.get("key") || "").trim();
    if (fragmentKey) {
      setKey(fragmentKey);
      const rest = parts.filter((part) => decode(part.split("=")[0]) !== "key").join("&");
      window.history.replaceState(null, "",
        location.pathname + location.search + (rest ? `#${rest}` : ""));
    }
    return {
      changedKey: Boolean(fragmentKey),
      find: params.get("find"),
      recon: params.get("recon"),
      date: params.get("date"),
    };
  }

  function applyFragment(first) {
    const fragment = readFragment();
    if (fragment.changedKey || first) startPolling();
    if (fragment.find) find(fragment.find);
    if (fragment.recon) {
      $("recon-account").value = fragment.recon;
      if (fragment.date) $("recon-date").value = fragment.date;
      reconcile();
    }
  }

  function init() {
    $("recon-date").value = today();
    setKey(key());
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("key-input").value.trim();
      $("key-input").value = "";
      if (!value) return;
      setKey(value);
      startPolling();
    });
    $("key-forget").addEventListener("click", () => {
      setKey("");
      startPolling();
    });
    $("find-form").addEventListener("submit", (event) => {
      event.preventDefault();
      find($("find-input").value);
    });
    $("recon-form").addEventListener("submit", (event) => {
      event.preventDefault();
      reconcile();
    });
    window.addEventListener("hashchange", () => applyFragment(false));
    applyFragment(true);
  }

  init();
})();
