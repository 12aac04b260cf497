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

    // A POST form with the session's CSRF token: fields [name, value] are hidden, inputs
    // [name, placeholder] are typed; a confirm input asks for confirmValue typed again.
    function actionForm(action, label, fields, inputs, confirmValue) {
        const f = el("form", {method: "post", action: action}, el("input", {type: "hidden", name: "csrf", value: csrf}));
        for (const [name, value] of fields) f.append(el("input", {type: "hidden", name: name, value: value}));
        for (const [name, placeholder] of inputs) f.append(el("input", {type: "text", name: name, placeholder: placeholder, required: ""}));
        if (confirmValue !== undefined)
            f.append(el("input", {type: "text", name: "confirm", placeholder: "type " + confirmValue + " to confirm", required: ""}));
        f.append(el("button", {type: "submit"}, label));
        return f;
    }

    // The forms that name what they change by hand (a label to a pod, a label shared): drawn
    // once, outside the tables that refresh() redraws.
    function labelForms() {
        const give = actionForm("/label/add", "Give the label", [], [["id", "pod ID"], ["label", "label"]]);
        give.insertBefore(el("select", {name: "protocol"}, el("option", {value: ""}, "protocol: default"),
            el("option", {value: "https"}, "https"), el("option", {value: "http"}, "http"), el("option", {value: "tcp"}, "tcp")),
        give.lastChild);
        const share = actionForm("/label/share", "Share the label", [], [["label", "label"], ["id", "with pod ID"]]);
        document.getElementById("labels").after(el("div", {id: "label-forms"}, el("h3", {}, "Give or share a label"), give, " ", share));
    }

    function fill(id, headers, rows) {
        const t = document.getElementById(id);
        // a form being typed into stays until it is sent
        if (t.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;
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
    // browser test to wait on), with what the relays report now (pod ls --json; idle as "idle /
    // target" when the pod declared its pool target) and the last hour's chart (chart.js), drawn
    // when /api/pods/ID/series answers.
    function fillPods(pods) {
        const t = document.getElementById("pods");
        // a form being typed into stays until it is sent
        if (t.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;
        const headers = ["ID", "state", "labels", "created", "online", "idle / target", "tunnels", "consumers", "bytes in / out",
            "last registration", "last hour", ""];
        t.replaceChildren(el("tr", {}, ...headers.map((h) => el("th", {}, h))));
        for (const p of pods) {
            const chartCell = el("td", {class: "chart"});
            t.append(el("tr", {"data-pod": p.id},
                el("td", {}, p.id), el("td", {}, p.disabled ? "disabled" : "enabled"), el("td", {}, p.labels.join(", ")),
                el("td", {}, new Date(p.created * 1000).toISOString()),
                el("td", {"data-online": p.online ? "yes" : "no"}, p.online ? "yes" : "no"),
                el("td", {}, p.pool_target ? p.idle + " / " + p.pool_target : String(p.idle)),
                el("td", {}, String(p.tunnels)), el("td", {}, String(p.consumers)),
                el("td", {}, p.bytes_in + " / " + p.bytes_out),
                el("td", {}, p.last_registration ? new Date(p.last_registration * 1000).toISOString() : "never"),
                chartCell,
                el("td", {}, podForm(p.disabled ? "/pod/enable" : "/pod/disable", p.id, p.disabled ? "Enable" : "Disable"),
                    podForm("/pod/rm", p.id, "Remove", true), actionForm("/pod/rotate", "New secret", [["id", p.id]], [], p.id))));
            drawChart(p.id, chartCell);
        }
    }

    // A pod's chart, fetched again at most every CHART_REFRESH_MS: its buckets are minutes, so
    // asking for every pod's series at each 5-s refresh would load Redis for nothing new.
    const CHART_REFRESH_MS = 30000;
    const charts = new Map(); // pod ID -> {at, node}
    function drawChart(id, cell) {
        const c = charts.get(id);
        if (c && Date.now() - c.at < CHART_REFRESH_MS) {
            cell.replaceChildren(c.node); // the table was redrawn: the node moves to the new row
            return;
        }
        load("/api/pods/" + encodeURIComponent(id) + "/series")
            .then((series) => {
                const node = window.p2mChart(series);
                charts.set(id, {at: Date.now(), node: node});
                cell.replaceChildren(node);
            })
            .catch((e) => cell.replaceChildren("no chart: " + e.message));
    }

    async function refresh() {
        const status = document.getElementById("updated");
        try {
            const [pods, labels, relays] = await Promise.all([load("/api/pods"), load("/api/labels"), load("/api/relays")]);
            fillPods(pods);
            fill("labels", ["label", "pod", "sharers", "protocol", ""], labels.map((l) => [
                l.label, l.pod, (l.sharers || []).join(", "), l.protocol,
                el("span", {}, actionForm("/label/rm", "Remove", [["label", l.label]], [], l.label),
                    ...(l.sharers || []).map((id) => actionForm("/label/unshare", "Unshare " + id, [["label", l.label], ["id", id]], []))),
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

    labelForms();
    refresh();
    setInterval(refresh, 5000);
})();
