// erg's pages work without scripts; this only adds modal dialogs and copy
// buttons on top of them.
"use strict";

document.addEventListener("click", (ev) => {
	const open = ev.target.closest("[data-open-dialog]");
	if (open) {
		const d = document.getElementById(open.dataset.openDialog);
		if (d && d.showModal) {
			ev.preventDefault();
			if (d.open) d.close();
			d.showModal();
		}
		return;
	}
	const close = ev.target.closest("[data-close-dialog]");
	if (close) {
		const d = close.closest("dialog");
		if (d) {
			ev.preventDefault();
			d.close();
		}
		return;
	}
	const copy = ev.target.closest("[data-copy]");
	if (copy) {
		const input = document.getElementById(copy.dataset.copy);
		input.select();
		navigator.clipboard.writeText(input.value).then(() => {
			copy.textContent = "Copied";
			setTimeout(() => { copy.textContent = "Copy"; }, 2000);
		}, () => {});
	}
});

// A dialog the server rendered open (after creating a link) becomes modal.
for (const d of document.querySelectorAll("dialog[data-show-modal]")) {
	if (d.showModal) {
		d.close();
		d.showModal();
	}
}

// Menus close when you click elsewhere.
document.addEventListener("click", (ev) => {
	for (const m of document.querySelectorAll("details.menu[open]")) {
		if (!m.contains(ev.target)) m.open = false;
	}
});
