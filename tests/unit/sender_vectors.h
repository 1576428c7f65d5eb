/* The sender's conformance vectors (tests/vectors/sender/README.md): each
 * script's acks and clock go into gateway/sender.c, and what it sends must
 * be exactly what the script says. */
#ifndef OTA_TEST_SENDER_VECTORS_H
#define OTA_TEST_SENDER_VECTORS_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/sender.h"

struct vec {
	struct gw_snd_fleet fleet;
	struct gw_grp grp;
	struct gw_snd snd;
	uint32_t out[1024]; /* sent since the last `send` line */
	size_t nout;
	enum gw_snd_ack_rc rc;
	struct gw_snd_ack_info info;
	const char *file;
	int line;
};

static int vec_send(void *ctx, struct gw_snd *s, uint32_t i)
{
	struct vec *v = ctx;
	(void)s;
	if (v->nout < sizeof(v->out) / sizeof(v->out[0]))
		v->out[v->nout++] = i;
	return 0;
}

static int vec_group_send(void *ctx, struct gw_grp *g, uint32_t i)
{
	(void)g;
	return vec_send(ctx, NULL, i);
}

static const struct gw_snd_ops vec_ops = {.send = vec_send,
					  .group_send = vec_group_send};

#define VEC_FAIL(v, ...)                                                       \
	do {                                                                   \
		fprintf(stderr, "%s:%d: ", (v)->file, (v)->line);              \
		fprintf(stderr, __VA_ARGS__);                                  \
		fprintf(stderr, "\n");                                         \
		return -1;                                                     \
	} while (0)

static int vec_u64(struct vec *v, char *tok, uint64_t *out)
{
	char *end;
	if (!tok)
		VEC_FAIL(v, "a number is missing");
	*out = strtoull(tok, &end, 10);
	if (*end)
		VEC_FAIL(v, "not a number: %s", tok);
	return 0;
}

static int vec_ack(struct vec *v, char *save)
{
	uint64_t t, cum, x;
	struct proto_ack a = {.tag = v->grp.rel.tag};
	if (vec_u64(v, strtok_r(NULL, " \t", &save), &t) ||
	    vec_u64(v, strtok_r(NULL, " \t", &save), &cum))
		return -1;
	a.cum = (uint32_t)cum;
	for (char *tok; (tok = strtok_r(NULL, " \t", &save));) {
		if (strncmp(tok, "tag=", 4) == 0) {
			if (vec_u64(v, tok + 4, &x))
				return -1;
			a.tag = (uint32_t)x;
			continue;
		}
		if (vec_u64(v, tok, &x))
			return -1;
		uint32_t b = (uint32_t)(x - cum - 1);
		if (x <= cum || b >= PROTO_SACK_MAX * 8)
			VEC_FAIL(v, "SACK index %s out of range", tok);
		a.sack[b / 8] |= (uint8_t)(1u << (b % 8));
		if (a.sack_len < b / 8 + 1)
			a.sack_len = (uint8_t)(b / 8 + 1);
	}
	v->rc = gw_snd_on_ack(&v->fleet, &v->snd, &a, t, &v->info);
	return 0;
}

static const char *vec_result(const struct vec *v)
{
	if (v->rc == GW_SND_ACK_STALE)
		return "stale";
	if (v->rc == GW_SND_ACK_BAD)
		return "bad";
	if (v->info.done)
		return "done";
	if (v->info.restarted)
		return "restarted";
	return v->info.clamped ? "clamped" : "ok";
}

static int vec_sends(struct vec *v, char *save)
{
	size_t k = 0;
	char want[512] = "", got[512] = "";
	for (char *tok; (tok = strtok_r(NULL, " \t", &save));) {
		if (strcmp(tok, "-") == 0)
			break;
		snprintf(want + strlen(want), sizeof(want) - strlen(want),
			 " %s", tok);
	}
	for (k = 0; k < v->nout; k++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), " %u",
			 v->out[k]);
	v->nout = 0;
	if (strcmp(want, got) != 0)
		VEC_FAIL(v, "sent [%s ], want [%s ]", got, want);
	return 0;
}

static int vec_release(struct vec *v, char *save)
{
	unsigned n = 0, w = 0;
	char *a = strtok_r(NULL, " \t", &save),
	     *b = strtok_r(NULL, " \t", &save);
	if (!a || !b || sscanf(a, "nfrags=%u", &n) != 1 ||
	    sscanf(b, "window=%u", &w) != 1 || n == 0 || n > 65536 || w == 0 ||
	    w > PROTO_WINDOW_MAX)
		VEC_FAIL(v, "bad release line");
	struct gw_snd_rel rel = {.tag = 0x77aa,
				 .nfrags = n,
				 .window = w,
				 .frag_size = 1024};
	gw_grp_init(&v->grp, &rel, NULL);
	v->fleet = (struct gw_snd_fleet){.ops = &vec_ops,
					 .ctx = v,
					 .cap = UINT64_MAX / 2};
	if (gw_snd_init(&v->snd, &v->grp, NULL) != 0)
		VEC_FAIL(v, "out of memory");
	return 0;
}

static int vec_line(struct vec *v, char *line)
{
	char *save = NULL, *cmd = strtok_r(line, " \t", &save);
	uint64_t t, x, y;
	if (!cmd)
		return 0;
	if (strcmp(cmd, "release") == 0)
		return vec_release(v, save);
	if (!v->snd.acked)
		VEC_FAIL(v, "the first line must be `release`");
	if (strcmp(cmd, "offer") == 0) {
		if (vec_u64(v, strtok_r(NULL, " \t", &save), &t))
			return -1;
		gw_snd_offered(&v->fleet, &v->snd, false, t);
		return 0;
	}
	if (strcmp(cmd, "ack") == 0)
		return vec_ack(v, save);
	if (strcmp(cmd, "tick") == 0) {
		if (vec_u64(v, strtok_r(NULL, " \t", &save), &t))
			return -1;
		gw_snd_tick(&v->fleet, &v->snd, t);
		return 0;
	}
	if (strcmp(cmd, "send") == 0)
		return vec_sends(v, save);
	if (strcmp(cmd, "result") == 0) {
		char *r = strtok_r(NULL, " \t", &save);
		if (!r || strcmp(r, vec_result(v)) != 0)
			VEC_FAIL(v, "result %s, want %s", vec_result(v),
				 r ? r : "?");
		return 0;
	}
	if (strcmp(cmd, "rto") == 0) {
		if (vec_u64(v, strtok_r(NULL, " \t", &save), &x))
			return -1;
		if ((uint64_t)(v->snd.rto + 0.5) != x)
			VEC_FAIL(v, "rto %.1f, want %llu", v->snd.rto,
				 (unsigned long long)x);
		return 0;
	}
	if (strcmp(cmd, "counts") == 0) {
		if (vec_u64(v, strtok_r(NULL, " \t", &save), &x) ||
		    vec_u64(v, strtok_r(NULL, " \t", &save), &y))
			return -1;
		if (v->snd.sent != x || v->snd.resent != y)
			VEC_FAIL(v, "counts %llu %llu, want %llu %llu",
				 (unsigned long long)v->snd.sent,
				 (unsigned long long)v->snd.resent,
				 (unsigned long long)x, (unsigned long long)y);
		return 0;
	}
	VEC_FAIL(v, "unknown command %s", cmd);
}

/* Run one script; 0 when every expectation holds. */
static int vec_run(const char *path)
{
	FILE *f = fopen(path, "r");
	struct vec *v = calloc(1, sizeof(*v));
	char buf[1024];
	int rc = v && f ? 0 : -1;
	if (v)
		v->file = path;
	while (rc == 0 && fgets(buf, sizeof(buf), f)) {
		v->line++;
		char *hash = strchr(buf, '#');
		if (hash)
			*hash = '\0';
		buf[strcspn(buf, "\r\n")] = '\0';
		rc = vec_line(v, buf);
	}
	if (v && v->snd.acked)
		gw_snd_free(&v->fleet, &v->snd);
	if (f)
		fclose(f);
	free(v);
	return rc;
}

/* Every *.txt of dir; returns how many ran, failures in *failed. */
static int vec_run_dir(const char *dir, int *failed)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;
	*failed = 0;
	if (!d)
		return -1;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		char path[4096];
		if (len < 5 || strcmp(de->d_name + len - 4, ".txt") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		n++;
		if (vec_run(path) != 0)
			(*failed)++;
	}
	closedir(d);
	return n;
}

#endif
