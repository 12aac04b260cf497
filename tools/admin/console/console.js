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

    async function refresh() {
        const status = document.getElementById("updated");
        try {
            const [pods, labels, relays] = await Promise.all([load("/api/pods"), load("/api/labels"), load("/api/relays")]);
            fill("pods", ["ID", "state", "labels", "created", ""], pods.map((p) => [
                p.id, p.disabled ? "disabled" : "enabled", p.labels.join(", "), new Date(p.created * 1000).toISOString(),
                el("span", {}, podForm(p.disabled ? "/pod/enable" : "/pod/disable", p.id, p.disabled ? "Enable" : "Disable"),
                    podForm("/pod/rm", p.id, "Remove", true)),
            ]));
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
