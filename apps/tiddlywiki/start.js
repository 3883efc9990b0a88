// start.js runs TiddlyWiki's Node.js server in a grain.
//
// TiddlyWiki keeps its wiki as a folder of files; here that is /var/wiki,
// made from the "server" edition on the grain's first start. TiddlyWiki
// itself listens on 127.0.0.1 one port above erg's; this file listens on
// erg's port and passes every request on, after turning erg's identity
// headers into the one TiddlyWiki understands: TiddlyWiki trusts a header
// for the user name (authenticated-user-header) and lets "(authenticated)"
// users write and "(anon)" read. Only a viewer whose role has the "write"
// permission gets that header, so a viewer is anonymous to TiddlyWiki and
// reads a read-only wiki: TiddlyWiki hides its edit controls and refuses
// the writes itself.
"use strict";
const fs = require("fs");
const http = require("http");
const path = require("path");

const home = process.env.TIDDLYWIKI_HOME || "/app/tiddlywiki";
const wiki = process.env.TIDDLYWIKI_WIKI || "/var/wiki";
const port = Number(process.env.PORT || 8000);
const inner = port + 1;
const userHeader = "x-erg-tiddlywiki-writer";

// First start: the server edition (tiddlywiki.info with the tiddlyweb and
// filesystem plugins) becomes the grain's wiki. It is copied file by file
// rather than with fs.cpSync, which would keep the package's read-only
// modes (a package's files are 0444 and its dirs 0555, so the copy could
// not be written to), into a temporary folder renamed at the end, so that
// a grain stopped half-way keeps no half a wiki.
function copyTree(from, to) {
	fs.mkdirSync(to, { recursive: true, mode: 0o700 });
	for (const e of fs.readdirSync(from, { withFileTypes: true })) {
		const src = path.join(from, e.name), dst = path.join(to, e.name);
		if (e.isDirectory()) copyTree(src, dst);
		else fs.writeFileSync(dst, fs.readFileSync(src), { mode: 0o600 });
	}
}
if (!fs.existsSync(path.join(wiki, "tiddlywiki.info"))) {
	const tmp = wiki + ".new";
	fs.rmSync(tmp, { recursive: true, force: true });
	copyTree(path.join(home, "editions", "server"), tmp);
	fs.mkdirSync(path.join(tmp, "tiddlers"), { recursive: true });
	fs.writeFileSync(path.join(tmp, "tiddlers", "$__SiteTitle.tid"), "title: $:/SiteTitle\n\nA wiki in a grain\n");
	fs.rmSync(wiki, { recursive: true, force: true });
	fs.renameSync(tmp, wiki);
}

const $tw = require(path.join(home, "boot", "boot.js")).TiddlyWiki();
$tw.boot.argv = [wiki, "--listen",
	"host=127.0.0.1", "port=" + inner,
	"authenticated-user-header=" + userHeader,
	"readers=(anon)", "writers=(authenticated)"];
$tw.boot.boot();

function writer(req) {
	const perms = String(req.headers["x-erg-permissions"] || "").split(",").map(s => s.trim());
	if (!perms.includes("write")) return "";
	return String(req.headers["x-erg-username"] || "") || "owner";
}

const agent = new http.Agent({ keepAlive: true });
const front = http.createServer((req, res) => {
	const headers = { ...req.headers };
	delete headers[userHeader]; // whatever the request said, only erg's headers decide
	const name = writer(req);
	if (name) headers[userHeader] = encodeURIComponent(name);
	const up = http.request({ host: "127.0.0.1", port: inner, method: req.method, path: req.url, headers, agent }, r => {
		res.writeHead(r.statusCode, r.headers);
		r.pipe(res);
	});
	up.on("error", err => {
		if (!res.headersSent) {
			res.writeHead(502, { "content-type": "text/plain" });
		}
		res.end("TiddlyWiki is not answering: " + err.message + "\n");
	});
	req.pipe(up);
});

// erg sends the first request as soon as erg's port listens, so that port
// opens only once TiddlyWiki's own does.
(function listenWhenReady() {
	const probe = require("net").connect(inner, "127.0.0.1");
	probe.on("connect", () => { probe.destroy(); front.listen(port, "127.0.0.1"); });
	probe.on("error", () => setTimeout(listenWhenReady, 5));
})();
