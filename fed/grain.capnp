# Cross-node grain access. A node serves these interfaces to its friends'
# nodes over the libp2p stream protocol /erg/capnp/1; Cap'n Proto is the only
# wire format between nodes for grain access.
#
# Regenerate grain.capnp.go with `go generate ./fed` (needs the capnp
# compiler and capnpc-go v3.1.0-alpha.2); the generated file is committed so
# a build needs neither.
@0xb6a4bcab707b51ca;

using Go = import "/go.capnp";
$Go.package("fed");
$Go.import("erg/fed");

# Gateway is the bootstrap capability a node gives each friend's node on
# each connection. It is bound to the peer that connected, which libp2p has
# authenticated; a token works only for the peer it was issued to.
interface Gateway {
  # restore turns a sturdy ref (the share token the owner's node sent this
  # friend) into a live grain capability for one user of the friend's node.
  # user is that user's name on the friend's node; the grain will see
  # "user@<friend's node name>", the name the owner's node knows the friend
  # by. Fails if the token is unknown, revoked, or held by another peer.
  restore @0 (token :Data, user :Text) -> (grain :Grain, info :GrainInfo);

  # offer delivers a share the calling node made for this node: the token
  # to restore it with later, what it is, the owner's name on the calling
  # node, and the user of this node it is for (empty: this node's owner).
  offer @1 (token :Data, info :GrainInfo, owner :Text, user :Text) -> ();

  # withdraw tells this node that the calling node revoked a share it
  # offered, named by the SHA-256 of its token; restoring it fails from now
  # on anyway.
  withdraw @2 (tokenHash :Data) -> ();

  # unfriend tells this node that the calling node's owner ended the
  # friendship: each forgets the other and what they shared.
  unfriend @3 () -> ();
}

struct GrainInfo {
  title @0 :Text;
  appName @1 :Text;
  role @2 :Text;
  permissions @3 :List(Text);
}

# Grain relays HTTP exchanges, websockets included, into one grain as one
# user with one role. Every call fails once the share behind it is revoked.
interface Grain {
  # request starts one exchange. The caller streams the request body into
  # the returned body stream (closing it at the end; at once if there is no
  # body); the callee answers through response. After a 101 response to an
  # upgrade request both streams carry the upgraded connection's bytes.
  #
  # The answer to a request without a body may come in the return instead,
  # when it is small and whole: one message where the responder takes
  # three. Then the responder is never called.
  request @0 (head :RequestHead, response :Responder) -> (body :ByteStream, answer :Answer);
}

# Answer is a whole response: status, headers and body (at most 256 KiB).
struct Answer {
  status @0 :UInt16;
  headers @1 :List(Header);
  body @2 :Data;
}

struct RequestHead {
  method @0 :Text;
  # path and query, starting with "/".
  path @1 :Text;
  headers @2 :List(Header);
  # the body's length in bytes, or -1 if unknown.
  contentLength @3 :Int64;
}

struct Header {
  name @0 :Text;
  value @1 :Text;
}

interface Responder {
  # start gives the response status and headers, and returns the stream the
  # response body (or the upgraded connection's bytes) go into. A small
  # response comes whole: its body in `body` and `end` set, so it takes one
  # message and the stream is not used.
  start @0 (status :UInt16, headers :List(Header), body :Data, end :Bool) -> (body :ByteStream);
}

# ByteStream carries bytes one way, in order, with flow control.
interface ByteStream {
  write @0 (data :Data) -> stream;
  # close ends the stream; a non-empty error says it was cut short.
  close @1 (error :Text);
}
