// The powerbox, in the grain's shell: the grain's frame asks for another
// grain with
//   window.parent.postMessage({ergPowerbox: {rpcId, query, label}}, "*")
// where query is {app: "todo"} or {api: "erg.files/v1"}; the shell shows
// what matches, the user picks one and a role (or cancels), and the frame
// gets back {ergPowerbox: {rpcId, claim}} (or {rpcId, canceled: true}, or
// {rpcId, error}) for its server to claim through the bridge. Only the
// frame's own window at the grain's own origin is listened to, and one
// request at a time: a frame that floods the shell gets errors, not
// dialogs, and the node limits the picks it records.
"use strict";

(() => {
	const frame = document.querySelector("iframe.grain");
	const dlg = document.getElementById("powerbox");
	if (!frame || !dlg || !dlg.showModal) return;
	const grain = dlg.dataset.grain;
	const csrf = dlg.dataset.csrf;
	const origin = new URL(frame.src, location.href).origin;
	const list = dlg.querySelector("[data-powerbox-options]");
	const errorEl = dlg.querySelector("[data-powerbox-error]");
	const connect = dlg.querySelector("[data-powerbox-connect]");
	let open = null; // the request being answered: {rpcId, label, answer}

	async function call(what, body) {
		const resp = await fetch("/api/grains/" + encodeURIComponent(grain) + "/powerbox/" + what, {
			method: "POST",
			headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
			body: JSON.stringify(body),
		});
		const data = await resp.json().catch(() => ({error: "unexpected reply from the node"}));
		if (!resp.ok) throw new Error(data.error || resp.statusText);
		return data;
	}

	function finish(msg) {
		if (!open) return;
		open.answer(msg);
		open = null;
		if (dlg.open) dlg.close();
	}

	function show(options) {
		list.replaceChildren();
		errorEl.textContent = "";
		if (options.length === 0) {
			const p = document.createElement("p");
			p.textContent = "You have no grain that fits. Make one, or ask a friend to share one.";
			p.dataset.testid = "powerbox-none";
			list.append(p);
		}
		options.forEach((o, i) => {
			const row = document.createElement("label");
			row.className = "item";
			const radio = document.createElement("input");
			radio.type = "radio";
			radio.name = "target";
			radio.value = o.grainId;
			radio.checked = i === 0;
			radio.dataset.testid = "powerbox-option";
			const title = document.createElement("span");
			title.className = "title";
			title.textContent = o.title;
			const meta = document.createElement("span");
			meta.className = "meta";
			meta.textContent = o.appName + (o.owner ? " · " + o.owner : "") + (o.from ? " · on " + o.from : "");
			const role = document.createElement("select");
			role.setAttribute("aria-label", "Access for " + o.title);
			role.dataset.testid = "powerbox-role";
			for (const r of o.roles) role.append(new Option(r.title || r.name, r.name));
			row.append(radio, title, meta, role);
			list.append(row);
		});
		connect.disabled = options.length === 0;
		dlg.showModal();
	}

	connect.addEventListener("click", async (ev) => {
		ev.preventDefault();
		const picked = list.querySelector("input[name=target]:checked");
		if (!open || !picked) return;
		const role = picked.closest("label").querySelector("select").value;
		connect.disabled = true;
		try {
			const r = await call("pick", {target: picked.value, role, label: open.label});
			finish({claim: r.claim});
		} catch (e) {
			errorEl.textContent = e.message;
		} finally {
			connect.disabled = false;
		}
	});
	dlg.addEventListener("close", () => finish({canceled: true}));
	dlg.querySelector("[data-powerbox-cancel]").addEventListener("click", (ev) => {
		ev.preventDefault();
		finish({canceled: true});
	});

	window.addEventListener("message", async (ev) => {
		if (ev.source !== frame.contentWindow || ev.origin !== origin) return;
		const req = ev.data && ev.data.ergPowerbox;
		if (!req || typeof req !== "object" || req.claim !== undefined) return;
		const rpcId = req.rpcId;
		const answer = (m) => frame.contentWindow.postMessage({ergPowerbox: Object.assign({rpcId}, m)}, origin);
		if (open) {
			answer({error: "another powerbox request is open"});
			return;
		}
		const label = typeof req.label === "string" ? req.label.slice(0, 100) : "";
		open = {rpcId, label, answer};
		try {
			show(await call("options", req.query || {}));
		} catch (e) {
			finish({error: e.message});
		}
	});
})();
