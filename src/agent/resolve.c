/* `dispenser-agent --resolve4 NAME`, run in a netvm by the daemon for a firewall rule's
 * dsthost= (as Qubes' qubes-firewall resolves it in the netvm: getaddrinfo, IPv4, with
 * the netvm's own /etc/hosts and resolver). Prints each address on a line; exit 1 when
 * the name does not resolve. */
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include "agent.h"

int resolve4_main(const char *name) {
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int r = getaddrinfo(name, NULL, &hints, &res);
    if (r != 0) {
        fprintf(stderr, "cannot resolve %s: %s\n", name, gai_strerror(r));
        return 1;
    }
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        char text[INET_ADDRSTRLEN];
        const struct sockaddr_in *sin = (const struct sockaddr_in *)a->ai_addr;
        if (inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)))
            printf("%s\n", text);
    }
    freeaddrinfo(res);
    return fflush(stdout) == 0 ? 0 : 1;
}
