/* chello is a dynamically linked C web server for the native-package
 * test: it answers every request with a line computed through libm. */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
	const char *p = getenv("PORT");
	int port = p ? atoi(p) : 8000;
	int s = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 16)) {
		perror("listen");
		return 1;
	}
	for (;;) {
		int c = accept(s, NULL, NULL);
		if (c < 0)
			continue;
		char buf[4096];
		if (read(c, buf, sizeof buf) <= 0) {
			close(c);
			continue;
		}
		char body[64], hdr[128];
		int n = snprintf(body, sizeof body, "hello from C %d\n", (int)sqrt((double)(port % 7 + 36)));
		int h = snprintf(hdr, sizeof hdr, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", n);
		write(c, hdr, h);
		write(c, body, n);
		close(c);
	}
}
