/*
 * sender: the gateway's side of the transfer (proto/PROTOCOL.md section 9)
 * as pure logic: a sliding window per device with an RTT estimate (RFC
 * 6298), selective acknowledgements, fast repair, timeouts (F-RTO)
 * and group pacing. No MQTT, no event loop, no clock of its own: every
 * call gets `now` (monotonic ms), and a fragment leaves through the
 * caller's ops. gateway/xfer.c wires it to the broker; tests/unit/
 * test_gw_sender.c drives it with a simulated clock and link.
 *
 * Ownership: the caller owns every struct here; gw_snd_init allocates a
 * bitmap that gw_snd_free frees, gw_grp_free frees a group's member list.
 * A struct gw_snd points to its release's struct gw_grp (borrowed: the
 * group must outlive it). Nothing here keeps a pointer to an ack.
 */
#ifndef OTA_GW_SENDER_H
#define OTA_GW_SENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

#define GW_SND_RING PROTO_WINDOW_MAX /* in flight: index < cum + window */
#define GW_SND_DUPTHRESH 3
#define GW_SND_RTO_INIT_MS 1000.0
#define GW_SND_RTO_MIN_MS 200.0
#define GW_SND_RTO_MAX_MS 60000.0
#define GW_SND_CWND_INIT 32 /* fragments in flight at first, at most */
#define GW_SND_FLAT_MS 25.0 /* RTT growth that is the ack delay, not a queue */
#define GW_GRP_GATHER_QUIET_MS 300.0 /* starts when 95% joined and no more */
#define GW_GRP_GATHER_MAX_MS 5000.0  /* for this long, or this long after */
#define GW_GRP_GATHER_HELD_MS 1000.0 /* at most, for offers the pacer holds */
#define GW_GRP_EJECT_MIN_MS 3000.0   /* a member may hold its group back */
#define GW_GRP_QUIET_MIN_MS 1000.0 /* group silence before a member's timeout */

/* A transfer: offered until the device answers, then sending, then done. */
enum gw_snd_state { GW_SND_OFFERED, GW_SND_SENDING, GW_SND_DONE };
/* A release's group: idle (no members), gathering, sending. */
enum gw_grp_state { GW_GRP_IDLE, GW_GRP_GATHER, GW_GRP_SENDING };

const char *gw_snd_state_name(enum gw_snd_state st);
const char *gw_grp_state_name(enum gw_grp_state st);

struct gw_snd;
struct gw_grp;

/* What the sender needs from the world; ctx is the fleet's. */
struct gw_snd_ops {
	/* Publish fragment i on s's own topic: 0, or -1 (not sent: the
	 * timeout sends it again). */
	int (*send)(void *ctx, struct gw_snd *s, uint32_t i);
	/* Publish fragment i once on g's topic, for all its members. */
	int (*group_send)(void *ctx, struct gw_grp *g, uint32_t i);
	/* s left its group; why is NULL when that is no news (it finished,
	 * or its offer was answered). Optional. */
	void (*left)(void *ctx, struct gw_snd *s, const char *why);
	/* s changed state (for the log). Optional. */
	void (*state)(void *ctx, struct gw_snd *s, enum gw_snd_state from);
	/* g changed state (for the log). Optional. */
	void (*group_state)(void *ctx, struct gw_grp *g,
			    enum gw_grp_state from);
};

struct gw_snd_stats {
	uint64_t frags_sent, frags_resent; /* resent: also in sent */
	uint64_t frags_grouped; /* of frags_sent: published once for a group */
	uint64_t frags_reneged; /* acked, then dropped by a block check */
	uint64_t fast_repairs;	/* of frags_resent: on SACK evidence */
	uint64_t rto_fired;	/* retransmission timeouts */
	uint64_t rto_spurious;	/* ... that later acks showed were only slow */
	uint64_t ejected;	/* members that held their group too long */
	uint64_t inflight_peak; /* bytes */
};

/* Every transfer of a gateway: the fleet-wide cap on bytes in flight
 * (the broker drops messages beyond its per-client queue). */
struct gw_snd_fleet {
	const struct gw_snd_ops *ops;
	void *ctx;
	uint64_t cap;	   /* bytes; a transfer may always send one */
	uint64_t inflight; /* bytes sent and not yet acknowledged */
	struct gw_snd_stats st;
};

/* What a release's transfers share; `halted` (paused or aborted: nothing
 * new is sent) is the caller's to keep current. */
struct gw_snd_rel {
	uint32_t tag, nfrags, window, frag_size;
	bool halted;
	/* The caller's offer pacing holds back offers of this release: its
	 * group gathers on for them (at most GW_GRP_GATHER_HELD_MS). */
	bool offers_held;
};

struct gw_grp {
	struct gw_snd_rel rel;
	enum gw_grp_state st;
	void *ud; /* the caller's (its release) */
	struct gw_snd **members;
	size_t nmembers, members_cap;
	uint32_t next;	      /* next fragment the group publishes */
	uint32_t max;	      /* highest next so far */
	uint32_t offered;     /* group offers not yet answered */
	uint64_t since_ms;    /* gathering since */
	uint64_t joined_ms;   /* the last device joined then */
	uint64_t progress_ms; /* a member's ack last brought progress */
	uint64_t look_ms;     /* the pacing last looked then (0: never) */
	uint64_t inflight;    /* bytes it counts in the fleet's figure */
};

struct gw_snd {
	struct gw_grp *grp; /* its release's (borrowed) */
	void *ud;	    /* the caller's (its device) */
	enum gw_snd_state st;
	uint32_t cum;	   /* every fragment below is held by the device */
	uint32_t next;	   /* first fragment not sent (since the last reset) */
	uint32_t sent_max; /* first fragment never sent at all */
	uint8_t *acked;	   /* bitmap, one bit per fragment */
	uint64_t sent_ms[GW_SND_RING];
	uint32_t seq[GW_SND_RING]; /* sends counted when it was last sent */
	bool retx[GW_SND_RING];	   /* sent more than once: no RTT sample */
	uint32_t sends;		   /* sends of this transfer, counter */
	uint64_t offer_ms, progress_ms;
	uint32_t offers;  /* offers sent since the last accept */
	uint32_t recover; /* after a timeout: its [cum, recover) are suspect */
	uint64_t rto_at;  /* when that timeout fired */
	uint8_t frto;	  /* 1: the next ack decides nothing, if it sends new */
	double min_rtt;	  /* smallest RTT sample, 0 before the first */
	double srtt, rttvar, rto;
	double last_rtt; /* the latest sample */
	bool have_rtt;
	double cwnd;	   /* fragments it may have in flight now, <= window */
	uint64_t inflight; /* bytes this transfer counts in the fleet's */
	bool grp_offered;  /* the offer it has not answered named the group */
	bool grp_seen;	   /* an offer named the group: it may hold group
			      fragments its own pump has not sent yet */
	bool member;	   /* in its release's group */
	bool holding;	   /* held the group back at the pacing's last look */
	uint64_t held_ms;  /* how long it held its group back, all told */
	uint64_t sent, resent; /* fragments of this transfer */
	uint64_t timeouts, fast_repairs;
};

/* The window to offer when the release names none: base is the window at
 * 4 KiB fragments; smaller fragments get as many more as keep its bytes
 * (at most PROTO_WINDOW_MAX): a fixed count starves fast links at 160 B. */
uint32_t gw_snd_default_window(uint32_t base, uint32_t frag_size);

/* 0, or -1 when out of memory. */
int gw_snd_init(struct gw_snd *s, struct gw_grp *g, void *ud);
void gw_snd_free(struct gw_snd_fleet *f, struct gw_snd *s);
void gw_grp_init(struct gw_grp *g, const struct gw_snd_rel *rel, void *ud);
void gw_grp_free(struct gw_snd_fleet *f, struct gw_grp *g);

/* An offer is going out (group: it names the group); the transfer waits
 * for its answer. */
void gw_snd_offered(struct gw_snd_fleet *f, struct gw_snd *s, bool group,
		    uint64_t now);
/* s leaves its group, if in one (offline, aborted). */
void gw_snd_leave(struct gw_snd_fleet *f, struct gw_snd *s, const char *why);
/* May a fresh transfer be offered the group now? */
bool gw_grp_open(const struct gw_grp *g);

enum gw_snd_ack_rc {
	GW_SND_ACK_OK,
	GW_SND_ACK_STALE, /* another release's tag, or the transfer is done */
	GW_SND_ACK_BAD,	  /* cum beyond the release */
};
struct gw_snd_ack_info {
	bool clamped;	/* it named fragments never sent: count it as bad */
	bool accepted;	/* it answered the offer */
	bool restarted; /* cum went back: the device lost what it held */
	uint32_t was;	/* ... from this cum */
	bool progress;	/* cum advanced */
	bool done;	/* every fragment held */
};
/* One ack of s's device; info (zeroed first) says what it did. */
enum gw_snd_ack_rc gw_snd_on_ack(struct gw_snd_fleet *f, struct gw_snd *s,
				 const struct proto_ack *a, uint64_t now,
				 struct gw_snd_ack_info *info);
/* Timeouts and what the window has room for; true when a timeout fired. */
bool gw_snd_tick(struct gw_snd_fleet *f, struct gw_snd *s, uint64_t now);
/* Send what the window has room for. */
void gw_snd_pump(struct gw_snd_fleet *f, struct gw_snd *s, uint64_t now);
/* Start, pace and publish the group; eject a member too slow. */
void gw_grp_pump(struct gw_snd_fleet *f, struct gw_grp *g, uint64_t now);

#endif
