'use strict';
// ep_erg is the Etherpad plugin that makes Etherpad an erg grain.
//
// - One pad per grain, named "pad": "/" and every other pad's page send the
//   browser to it, and it is made on the grain's first start.
// - Etherpad's own login is replaced by erg's identity headers, which erg's
//   proxy sets on every request (and removes from what a browser sends):
//   every request's session user is the X-Erg-Username it came with, made
//   read-only unless X-Erg-Permissions holds "write". Etherpad then makes
//   the pad read-only for that user itself (its userCanModify check), and
//   drops the edits a read-only connection sends.
// - Authors are named from X-Erg-Username: the name is set when a user's
//   pad connects, and a name a client sends later is replaced by it.

const authorManager = require('ep_etherpad-lite/node/db/AuthorManager');
const padManager = require('ep_etherpad-lite/node/db/PadManager');

const PAD = 'pad';

const identity = (headers) => {
  const perms = String(headers['x-erg-permissions'] || '').split(',').map((s) => s.trim());
  return {
    username: String(headers['x-erg-username'] || '') || 'anonymous',
    readOnly: !perms.includes('write'),
  };
};

// isOtherPad says whether a path is "/" or a pad other than the grain's.
const isOtherPad = (path) => {
  if (path === '/') return true;
  const m = /^\/p\/([^/]+)/.exec(path);
  return m != null && decodeURIComponent(m[1]) !== PAD;
};

exports.preAuthorize = (hookName, {req}, cb) => {
  if (isOtherPad(req.path)) return cb([false]);
  const id = identity(req.headers);
  const user = req.session.user;
  // The same user keeps the session's user object, with the pad
  // authorizations Etherpad noted in it; anyone else gets a fresh one.
  if (user == null || user.username !== id.username || user.readOnly !== id.readOnly) {
    req.session.user = {...id, padAuthorizations: {}};
  }
  return cb([]); // go on to Etherpad's own checks, with this user
};

exports.preAuthzFailure = (hookName, {req, res}, cb) => {
  if (!isOtherPad(req.path)) return cb([]);
  res.redirect(`/p/${PAD}`); // each grain is an origin of its own
  return cb([true]);
};

exports.handleMessage = async (hookName, {message, socket}) => {
  const {session: {user} = {}} = socket.client.request;
  if (user == null) return;
  if (message.type === 'CLIENT_READY' && message.token) {
    const authorID = await authorManager.getAuthor4Token(message.token);
    await authorManager.setAuthorName(authorID, user.username);
  }
  const data = message.data || {};
  if (message.type === 'COLLABROOM' && data.type === 'USERINFO_UPDATE' && data.userInfo) {
    data.userInfo.name = user.username;
  }
};

exports.createServer = async () => {
  // The grain's first start makes its pad.
  if (!await padManager.doesPadExist(PAD)) await padManager.getPad(PAD);
};
