/* cancel — an eventfd that becomes readable once and stays readable.
 *
 * Firing writes 1 to the eventfd and sets a flag; nothing ever reads the counter back, so
 * every later poll() sees it readable at once: one fire wakes every waiter, present and
 * future. The flag is an atomic so cancel_fired() costs no system call on hot paths (a curl
 * progress callback runs many times a second). write(2) and atomic stores are
 * async-signal-safe, so a SIGTERM handler may fire the handle directly.
 */
#include "tsgraphd/cancel.h"
#include "tsgraphd/util.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct cancel {
	int fd;
	atomic_bool fired;
	_Atomic int64_t alive_ms;
};

int cancel_new(struct cancel **ret)
{
	struct cancel *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->fd < 0) {
		int r = -errno;

		free(c);
		return r;
	}
	atomic_init(&c->fired, false);
	*ret = c;
	return 0;
}

void cancel_free(struct cancel *c)
{
	if (!c)
		return;
	close(c->fd);
	free(c);
}

void cancel_fire(struct cancel *c)
{
	uint64_t one = 1;
	int saved = errno;

	if (!c || atomic_exchange(&c->fired, true))
		return;
	/* Cannot fail in a way worth handling: the counter is far from its maximum. */
	if (write(c->fd, &one, sizeof(one)) < 0) {
		/* the flag alone still stops every loop that checks it */
	}
	errno = saved;
}

bool cancel_fired(const struct cancel *c)
{
	return c && atomic_load(&((struct cancel *)c)->fired);
}

void cancel_alive(struct cancel *c)
{
	if (c)
		atomic_store_explicit(&c->alive_ms, monotonic_ms(), memory_order_relaxed);
}

int64_t cancel_alive_ms(const struct cancel *c)
{
	return c ? atomic_load_explicit(&((struct cancel *)c)->alive_ms, memory_order_relaxed) : 0;
}

int cancel_fd(const struct cancel *c)
{
	return c ? c->fd : -1;
}

int cancel_sleep(struct cancel *c, int64_t ms)
{
	int64_t until = monotonic_ms() + (ms > 0 ? ms : 0);

	for (;;) {
		int64_t left = until - monotonic_ms();
		struct pollfd p = { .fd = cancel_fd(c), .events = POLLIN };

		if (cancel_fired(c))
			return -ECANCELED;
		cancel_alive(c);
		if (left <= 0)
			return 0;
		/* poll() ignores a negative fd: a NULL handle just sleeps. */
		if (poll(&p, 1, left > 1000 ? 1000 : (int)left) < 0 && errno != EINTR)
			return -errno;
	}
}
