// Installing from the store works as a plain form post that waits for the
// install. With this script the form instead calls the JSON API, whose
// answer is a stream of progress lines, and shows the download as it
// goes (bytes, peers and rate) and then the node's checking of it.
"use strict";

(() => {
	const size = (n) => {
		if (n < 1024) return n + " B";
		if (n < 1 << 20) return (n / 1024).toFixed(1) + " KiB";
		return (n / (1 << 20)).toFixed(1) + " MiB";
	};
	// The API's errors start with the kind of refusal; the page says it
	// in its own words.
	const plain = (msg) => {
		msg = String(msg).replace(/^(invalid request|not found|forbidden|not signed in): /, "");
		return msg.charAt(0).toUpperCase() + msg.slice(1);
	};

	async function install(form) {
		const id = form.dataset.storeInstall;
		const button = form.querySelector("button[type=submit]");
		const status = form.querySelector(".progress");
		const show = (text, bad) => {
			status.hidden = false;
			status.textContent = text;
			status.classList.toggle("bad", !!bad);
		};
		button.disabled = true;
		show("Looking up the newest version…");
		try {
			const started = performance.now();
			const resp = await fetch("/api/store/apps/" + encodeURIComponent(id) + "/install", {
				method: "POST",
				credentials: "same-origin",
				headers: { "X-CSRF-Token": form.elements.csrf.value },
			});
			if (!resp.ok) {
				const body = await resp.json().catch(() => ({}));
				throw new Error(body.error || "the node answered HTTP " + resp.status);
			}
			const reader = resp.body.getReader();
			const decoder = new TextDecoder();
			let buf = "";
			let fetched = "";
			for (;;) {
				const { value, done } = await reader.read();
				if (done) break;
				buf += decoder.decode(value, { stream: true });
				let nl;
				while ((nl = buf.indexOf("\n")) >= 0) {
					const line = buf.slice(0, nl).trim();
					buf = buf.slice(nl + 1);
					if (!line) continue;
					const ev = JSON.parse(line);
					if (ev.progress) {
						const p = ev.progress;
						const secs = (performance.now() - started) / 1000;
						const rate = secs > 0 ? " · " + size(p.bytes / secs) + "/s" : "";
						fetched = "Fetched " + size(p.bytes) + " from " + p.peers + " peer" + (p.peers === 1 ? "" : "s");
						show(fetched + rate);
						form.dataset.bytes = p.bytes;
					} else if (ev.step) {
						// The node checks and unpacks what it fetched; the
						// download's figures stay in view.
						const s = ev.step;
						const pct = s.total > 0 ? " " + Math.floor(s.done * 100 / s.total) + "%" : "";
						show((fetched ? fetched + " · " : "") + s.phase.charAt(0).toUpperCase() + s.phase.slice(1) + pct + "…");
					} else if (ev.app) {
						show("Installed " + ev.app.name + ".");
						location.assign("/apps?installed=" + encodeURIComponent(ev.app.id));
						return;
					} else if (ev.error) {
						throw new Error(ev.error);
					}
				}
			}
			throw new Error("the node stopped answering before the install finished");
		} catch (err) {
			show("Not installed: " + plain(err.message), true);
			button.disabled = false;
		}
	}

	document.addEventListener("submit", (ev) => {
		const form = ev.target.closest("form[data-store-install]");
		// Without streaming fetch the form posts as it is.
		if (!form || !window.fetch || !window.ReadableStream || !window.TextDecoder) return;
		ev.preventDefault();
		if (!form.querySelector("button[type=submit]").disabled) install(form);
	});
})();
