// The console's live view: polls /api/pods, /api/labels and /api/relays (the CLI's --json) every
// 5 s and redraws the tables with the DOM (textContent only: nothing from Redis is parsed as HTML).
// Served by pipe2me-admin serve from its binary, under script-src 'self'.
"use strict";
(function () {
    const csrf = document.querySelector('meta[name="csrf"]').content;

    function el(tag, attrs, ...kids) {
        const e = document.createElement(tag);
        for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
        for (const k of kids) e.append(k);
        return e;
    }

    // A POST form for one pod, with the session's CSRF token; rm asks for the ID typed again.
    function podForm(action, id, label, confirm) {
        const f = el("form", {method: "post", action: action},
            el("input", {type: "hidden", name: "csrf", value: csrf}), el("input", {type: "hidden", name: "id", value: id}));
        if (confirm) f.append(el("input", {type: "text", name: "confirm", placeholder: "type " + id + " to confirm", required: ""}));
        f.append(el("button", {type: "submit"}, label));
        return f;
    }

    function fill(id, headers, rows) {
        const t = document.getElementById(id);
        t.replaceChildren(el("tr", {}, ...headers.map((h) => el("th", {}, h))));
        for (const r of rows) t.append(el("tr", {}, ...r.map((c) => el("td", {}, c))));
    }

    async function load(path) {
        const r = await fetch(path, {credentials: "same-origin", cache: "no-store"});
        if (r.status === 401) {
            location.reload(); // the session ended: the login form
            throw new Error("logged out");
        }
        if (!r.ok) throw new Error(path + ": " + r.status);
        return r.json();
    }

    // The pods table: a row per pod (data-pod="ID", its online cell data-online="yes|no", for a
    // browser test to wait on), with what the relays report now (pod ls --json) and the last hour's
    // chart (chart.js), drawn when /api/pods/ID/series answers.
    function fillPods(pods) {
        const t = document.getElementById("pods");
        const headers = ["ID", "state", "labels", "created", "online", "idle", "tunnels", "consumers", "bytes in / out",
            "last registration", "last hour", ""];
        t.replaceChildren(el("tr", {}, ...headers.map((h) => el("th", {}, h))));
        for (const p of pods) {
            const chartCell = el("td", {class: "chart"});
            t.append(el("tr", {"data-pod": p.id},
                el("td", {}, p.id), el("td", {}, p.disabled ? "disabled" : "enabled"), el("td", {}, p.labels.join(", ")),
                el("td", {}, new Date(p.created * 1000).toISOString()),
                el("td", {"data-online": p.online ? "yes" : "no"}, p.online ? "yes" : "no"),
                el("td", {}, String(p.idle)), el("td", {}, String(p.tunnels)), el("td", {}, String(p.consumers)),
                el("td", {}, p.bytes_in + " / " + p.bytes_out),
                el("td", {}, p.last_registration ? new Date(p.last_registration * 1000).toISOString() : "never"),
                chartCell,
                el("td", {}, podForm(p.disabled ? "/pod/enable" : "/pod/disable", p.id, p.disabled ? "Enable" : "Disable"),
                    podForm("/pod/rm", p.id, "Remove", true))));
            load("/api/pods/" + encodeURIComponent(p.id) + "/series")
                .then((series) => chartCell.replaceChildren(window.p2mChart(series)))
                .catch((e) => chartCell.replaceChildren("no chart: " + e.message));
        }
    }

    async function refresh() {
        const status = document.getElementById("updated");
        try {
            const [pods, labels, relays] = await Promise.all([load("/api/pods"), load("/api/labels"), load("/api/relays")]);
            fillPods(pods);
            fill("labels", ["label", "pod", "sharers", "protocol"], labels.map((l) => [
                l.label, l.pod, (l.sharers || []).join(", "), l.protocol,
            ]));
            fill("relays", ["name", "address", "ports", "started", "leases", "idle", "tunnels", "draining"], relays.map((r) => [
                r.name, r.address, r.ports, r.started, String(r.leases), String(r.idle), String(r.tunnels),
                r.draining ? (r.drain_seen ? "yes" : "marked") : "no",
            ]));
            status.textContent = "updated " + new Date().toLocaleTimeString();
        } catch (e) {
            status.textContent = "not updated: " + e.message;
        }
    }

    refresh();
    setInterval(refresh, 5000);
})();
