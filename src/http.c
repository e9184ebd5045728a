/* http — outbound HTTP(S) for the sinks (see the header). */
#include "tsgraphd/http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

struct http {
	CURL *curl;
	struct http_options opt;
	struct buf body;
	size_t header_bytes;
	bool too_large, headers_too_large, body_cut, out_of_memory;
	int64_t retry_after_ms;
	uint64_t rng;
	char curl_error[CURL_ERROR_SIZE];
};

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
	struct http *h = ud;
	size_t len = size * n, room;
	int r;

	if (h->opt.discard_body_over_max) {
		/* Keep what fits, one byte left for http_request's terminating NUL; read and
		 * drop the rest, so the answer's status still counts. */
		room = h->body.max > h->body.len ? h->body.max - h->body.len - 1 : 0;
		if (len > room) {
			h->body_cut = true;
			len = room;
		}
		if (len > 0 && buf_append(&h->body, data, len) < 0) {
			h->out_of_memory = true;
			return 0;
		}
		return size * n;
	}
	r = buf_append(&h->body, data, len);
	if (r < 0) {
		if (r == -ENOMEM)
			h->out_of_memory = true;
		else
			h->too_large = true;
		return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
	}
	return len;
}

int http_retry_after(const char *line, size_t len, int64_t *ret_ms)
{
	static const char name[] = "retry-after:";
	size_t vlen, i = 0;
	const char *v;
	char tmp[32];
	uint64_t u;

	if (len < sizeof(name) - 1 || strncasecmp(line, name, sizeof(name) - 1) != 0)
		return -ENOENT;
	vlen = len - (sizeof(name) - 1);
	v = line + sizeof(name) - 1;
	while (vlen > 0 && (*v == ' ' || *v == '\t'))
		v++, vlen--;
	while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
		vlen--;
	for (; i < vlen && i < sizeof(tmp) - 1; i++)
		tmp[i] = v[i];
	tmp[i] = '\0';
	if (vlen >= sizeof(tmp) || parse_u64(tmp, 0, 86400, &u) < 0)
		return -EBADMSG;
	*ret_ms = (int64_t)u * 1000;
	return 0;
}

static size_t on_header(char *line, size_t size, size_t n, void *ud)
{
	struct http *h = ud;
	size_t len = size * n;
	int64_t ms;

	h->header_bytes += len;
	if (h->header_bytes > HTTP_HEADERS_MAX) {
		if (h->opt.discard_body_over_max)
			return len; /* read, not looked at */
		h->headers_too_large = true;
		return 0;
	}
	if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) /* a new answer (e.g. after 100) */
		h->retry_after_ms = -1;
	else if (http_retry_after(line, len, &ms) == 0)
		h->retry_after_ms = ms;
	return len;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	return cancel_fired(ud) ? 1 : 0;
}

int http_new(const struct http_options *opt, struct http **ret)
{
	long timeout = (long)(opt->timeout_s ? opt->timeout_s : 30) * 1000;
	struct http *h = calloc(1, sizeof(*h));
	CURL *c;

	if (!h)
		return -ENOMEM;
	h->opt = *opt;
	h->rng = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)h ^ 0x9E3779B97F4A7C15ULL;
	buf_init(&h->body, opt->max_response ? opt->max_response : 1024 * 1024);
	c = h->curl = curl_easy_init();
	if (!c || curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout < 10000 ? timeout : 10000L) !=
		    CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_USERAGENT,
			     opt->user_agent ? opt->user_agent : "tsgraphd/" TSGRAPHD_VERSION) !=
		    CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_WRITEDATA, h) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_HEADERDATA, h) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_NOPROGRESS, opt->cancel ? 0L : 1L) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_XFERINFODATA, opt->cancel) != CURLE_OK ||
	    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->curl_error) != CURLE_OK ||
	    (opt->ca_file && (curl_easy_setopt(c, CURLOPT_CAINFO, opt->ca_file) != CURLE_OK ||
			      curl_easy_setopt(c, CURLOPT_CAPATH, NULL) != CURLE_OK))) {
		http_free(h);
		return -ENOMEM;
	}
	*ret = h;
	return 0;
}

void http_free(struct http *h)
{
	if (!h)
		return;
	if (h->curl)
		curl_easy_cleanup(h->curl);
	buf_free(&h->body);
	free(h);
}

/* A transport failure as a negative errno and a line for a person. */
static int transport_error(struct http *h, CURLcode cc, char err[static HTTP_ERR_MAX])
{
	const char *what = h->curl_error[0] ? h->curl_error : curl_easy_strerror(cc);

	switch (cc) {
	case CURLE_ABORTED_BY_CALLBACK:
		snprintf(err, HTTP_ERR_MAX, "stopped");
		return -ECANCELED;
	case CURLE_WRITE_ERROR:
	case CURLE_FILESIZE_EXCEEDED:
		if (h->headers_too_large) {
			snprintf(err, HTTP_ERR_MAX, "answer headers larger than %u bytes",
				 HTTP_HEADERS_MAX);
			return -EMSGSIZE;
		}
		if (h->too_large) {
			snprintf(err, HTTP_ERR_MAX, "answer larger than %zu bytes", h->body.max);
			return -EMSGSIZE;
		}
		if (h->out_of_memory) {
			snprintf(err, HTTP_ERR_MAX, "out of memory reading the answer");
			return -ENOMEM;
		}
		break;
	case CURLE_OPERATION_TIMEDOUT:
		snprintf(err, HTTP_ERR_MAX, "timed out: %s", what);
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
		snprintf(err, HTTP_ERR_MAX, "cannot connect: %s", what);
		return -ECONNREFUSED;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ISSUER_ERROR:
		snprintf(err, HTTP_ERR_MAX, "TLS: %s", what);
		return -EPROTO;
	case CURLE_OUT_OF_MEMORY:
		snprintf(err, HTTP_ERR_MAX, "out of memory (or an answer header over 100 KB)");
		return -ENOMEM;
	default:
		break;
	}
	snprintf(err, HTTP_ERR_MAX, "%s", what);
	return -EIO;
}

/* Header lines may carry credentials (Authorization): wiped before they are freed. */
static void slist_wipe_free(struct curl_slist *list)
{
	for (struct curl_slist *l = list; l; l = l->next)
		if (l->data)
			explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(list);
}

int http_request(struct http *h, const char *method, const char *url, const char *const *headers,
		 const char *body, size_t len, struct http_response *resp,
		 char err[static HTTP_ERR_MAX])
{
	struct curl_slist *list = NULL;
	bool post = strcmp(method, "POST") == 0;
	CURLcode cc;
	int r = 0;

	err[0] = '\0';
	*resp = (struct http_response){ .retry_after_ms = -1 };
	if (cancel_fired(h->opt.cancel)) {
		snprintf(err, HTTP_ERR_MAX, "stopped");
		return -ECANCELED;
	}
	for (size_t i = 0; headers && headers[i]; i++) {
		struct curl_slist *l = curl_slist_append(list, headers[i]);

		if (!l) {
			slist_wipe_free(list);
			snprintf(err, HTTP_ERR_MAX, "out of memory");
			return -ENOMEM;
		}
		list = l;
	}
	buf_reset(&h->body);
	h->header_bytes = 0;
	h->too_large = h->headers_too_large = h->body_cut = h->out_of_memory = false;
	h->retry_after_ms = -1;
	h->curl_error[0] = '\0';
	if (curl_easy_setopt(h->curl, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, list) != CURLE_OK ||
	    (post ? curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len) !=
				     CURLE_OK ||
			     curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, body ? body : "") !=
				     CURLE_OK
		  : curl_easy_setopt(h->curl, CURLOPT_HTTPGET, 1L) != CURLE_OK)) {
		snprintf(err, HTTP_ERR_MAX, "cannot set up the request");
		r = -EINVAL;
		goto out;
	}
	cc = curl_easy_perform(h->curl);
	if (cc != CURLE_OK) {
		r = transport_error(h, cc, err);
		goto out;
	}
	if (buf_append(&h->body, "", 1) < 0) { /* the terminating NUL */
		snprintf(err, HTTP_ERR_MAX, "answer larger than %zu bytes", h->body.max);
		r = -EMSGSIZE;
		goto out;
	}
	h->body.len--;
	cancel_alive(h->opt.cancel); /* an answer: the watchdog's sign of progress */
	curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &resp->status);
	resp->retry_after_ms = h->retry_after_ms;
	resp->body = h->body.data;
	resp->body_len = h->body.len;
	resp->body_cut = h->body_cut;
out:
	curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, NULL);
	slist_wipe_free(list);
	return r;
}

bool http_retryable(long status)
{
	return status == 408 || status == 425 || status == 429 || (status >= 500 && status <= 599);
}

int64_t http_backoff_ms(struct http *h, unsigned attempt, int64_t retry_after_ms)
{
	int64_t d = HTTP_BACKOFF_BASE;
	uint64_t x = h->rng; /* xorshift64*: jitter only, not security */

	for (unsigned i = 1; i < attempt && d < HTTP_BACKOFF_CAP; i++)
		d *= 2;
	if (d > HTTP_BACKOFF_CAP)
		d = HTTP_BACKOFF_CAP;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	h->rng = x;
	/* A Retry-After shorter than this try's lower bound (0 included) is not taken: five
	 * tries back to back would hammer a server that is already struggling. */
	if (retry_after_ms >= 0)
		return retry_after_ms < d / 2		   ? d / 2
		       : retry_after_ms < HTTP_BACKOFF_CAP ? retry_after_ms
							   : HTTP_BACKOFF_CAP;
	return d / 2 + (int64_t)((x * 0x2545F4914F6CDD1DULL) % (uint64_t)(d / 2 + 1));
}

int http_wait(struct http *h, int64_t ms)
{
	return cancel_sleep(h->opt.cancel, ms);
}
