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
#
# A caller that sets `kinds` in a call's parameters is told of a refusal in
# the results' `failure` (see Failure) instead of by an exception; a call
# without it (from an older node) fails with an exception, as it always
# did. An older node ignores `kinds` and throws, so a caller reads an
# exception as a failure of kind "internal" with the exception's reason.
# These fields came last, at new ordinals: older and newer nodes
# interoperate.
interface Gateway {
  # restore turns a sturdy ref (the share token the owner's node sent this
  # friend) into a live grain capability for one user of the friend's node.
  # user is that user's name on the friend's node; the grain will see
  # "user@<friend's node name>", the name the owner's node knows the friend
  # by. Fails if the token is unknown, revoked, or held by another peer.
  #
  # role, if set, asks for the grain with that role instead of the share's:
  # one of info.roles, none higher than the share's, so the friend's node
  # can hand on less than the share gives (its powerbox does). An older
  # node ignores it and answers with the share's role, which info.role
  # says: a caller that asked for a role checks it got that one.
  restore @0 (token :Data, user :Text, kinds :Bool, role :Text) -> (grain :Grain, info :GrainInfo, failure :Failure);

  # offer delivers a share the calling node made for this node: the token
  # to restore it with later, what it is, the owner's name on the calling
  # node, and the user of this node it is for (empty: this node's owner).
  offer @1 (token :Data, info :GrainInfo, owner :Text, user :Text, kinds :Bool) -> (failure :Failure);

  # withdraw tells this node that the calling node revoked a share it
  # offered, named by the SHA-256 of its token; restoring it fails from now
  # on anyway.
  withdraw @2 (tokenHash :Data, kinds :Bool) -> (failure :Failure);

  # unfriend tells this node that the calling node's owner ended the
  # friendship: each forgets the other and what they shared.
  unfriend @3 (kinds :Bool) -> (failure :Failure);
}

# Failure is why a call was refused: kind is the wire name of an erg error
# kind ("not_found", "forbidden", "too_many", ...; one the reader does not
# know reads as "internal"), reason says why, for a person. A result
# with a failure carries nothing else.
struct Failure {
  kind @0 :Text;
  reason @1 :Text;
}

struct GrainInfo {
  title @0 :Text;
  appName @1 :Text;
  role @2 :Text;
  permissions @3 :List(Text);
  # offers names the APIs the grain's app serves (its manifest's offers),
  # so the friend's powerbox can offer the grain to a request for one.
  offers @4 :List(Text);
  # roles are the app's roles that hold no permission the share's role
  # lacks, the share's own among them: those a user of the friend's node
  # may hand on (restore's role).
  roles @5 :List(RoleInfo);
  # apiPath is where the grain's app serves its API (its manifest's
  # apiPath, "" for none), so the friend's powerbox sends a grant's
  # requests below it, as the owner's own does.
  apiPath @6 :Text;
}

struct RoleInfo {
  name @0 :Text;
  title @1 :Text;
  permissions @2 :List(Text);
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
  #
  # With kinds set, a refused request (revoked, malformed) is answered with
  # a failure, as Gateway's calls are.
  request @0 (head :RequestHead, response :Responder, kinds :Bool) -> (body :ByteStream, answer :Answer, failure :Failure);
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

# Bridge is what a grain's app finds on its bridge socket
# ($ERG_BRIDGE_SOCKET, a unix socket in its sandbox): the powerbox, bound
# to that grain by where the socket is, never by anything the app says.
# The node's plain HTTP face of it, on the grain's loopback
# ($ERG_BRIDGE_URL), is a client of this same interface: a claim there is
# a claim call, and each request an open and a request on the Grain it
# gives. With kinds set, a refusal comes as a failure, as Gateway's do.
interface Bridge {
  # claim trades a powerbox claim (which the shell gave the grain's frame
  # for a grain the user picked) for a durable grant: grant is its secret,
  # for open; id names it in the grain's Connections, target is the grain
  # it reaches and role the role it has there. A claim is good once, for
  # five minutes, for this grain only.
  claim @0 (claim :Text, label :Text, kinds :Bool) -> (grant :Text, id :Text, failure :Failure, target :Text, role :Text);

  # open turns a grant into a capability to its target grain, which gets
  # each request as the granting user with the granted role, below its
  # app's apiPath. It fails once the grant is revoked or its user lost
  # their access; so does every request on a capability already open.
  open @1 (grant :Text, kinds :Bool) -> (grain :Grain, failure :Failure);
}
