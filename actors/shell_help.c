/*
 * actors/shell_help.c - the table of shell commands. See shell_help.h.
 */
#include "shell_help.h"

#include <stddef.h>
#include <string.h>

const chat_shell_help_t chat_shell_help[] = {
    {"status", "status", "version, uptime, load, connections, rates",
     "Shows the version and uptime, each scheduler's load and run queue,\n"
     "live connections, actors by kind, messages handled per second and\n"
     "the store's commits per second and writes per commit (rates over\n"
     "the last second)."},
    {"actors", "actors [KIND] [N]", "the busiest actors",
     "Lists the N (default 20) actors with the deepest mailboxes, then the\n"
     "most messages handled, optionally of one KIND (conn, session,\n"
     "supervisor, store, ...). The scan runs on the thread pool."},
    {"actor", "actor ID", "one actor in detail",
     "Shows an actor's kind, state summary, mailbox depth, messages\n"
     "handled, restarts, supervisor, links, monitors and children. The\n"
     "actor itself answers; one that does not within a second is reported\n"
     "as busy or stuck."},
    {"tree", "tree", "the supervision tree",
     "Shows the supervision tree from the root supervisor. Where a parent\n"
     "has more than four children of one kind they are folded into one\n"
     "line with their count and total mailbox depth."},
    {"kill", "kill ID [kill|crash|shutdown]", "crash an actor on purpose",
     "Sends actor ID an exit signal (default kill: cannot be trapped) and\n"
     "waits for it to end. When a supervisor owns it, waits up to three\n"
     "seconds for the restart and shows the new child's id. A connection\n"
     "has no supervisor: its client reconnects. The root supervisor is\n"
     "refused (use shutdown)."},
    {"user", "user NAME", "an account: devices, sessions, presence",
     "Shows an account (read-only from the store): whether the operator\n"
     "blocked it, its devices with creation and last-seen times, and for\n"
     "each device online now the actor serving it and its mailbox depth."},
    {"disconnect", "disconnect NAME", "close every connection of a user",
     "Closes the connections of every device of NAME with 1008. The\n"
     "clients may reconnect at once; use block to keep them out."},
    {"block", "block NAME", "refuse an account's logins",
     "Marks NAME blocked in the store and disconnects its devices. Its\n"
     "logins and resumes are then refused with 303 until unblock."},
    {"unblock", "unblock NAME", "lift a block", "Lets NAME log in again."},
    {"invite", "invite", "make a registration invite",
     "Makes a single-use invite token. While registration is closed\n"
     "([accounts] registration = closed), register needs one."},
    {"group", "group ID", "a group: members, roles, delivery",
     "Shows a group's name, creation time and stream head, whether its\n"
     "actor is in memory, then each member with its role and the last\n"
     "entry of the stream it has (delivered) and read."},
    {"trace", "trace user NAME [SECONDS] | trace actor ID [SECONDS]",
     "stream the events of a user or an actor",
     "Streams, for SECONDS (default 10, at most 3600), the events that\n"
     "connections and sessions report for the user or the actor:\n"
     "requests in, frames out, logins, ends. Ctrl-C or closing the shell\n"
     "ends it early; events are dropped, and counted, rather than slow\n"
     "the server when the shell reads too slowly."},
    {"fault",
     "fault list | fault arm NAME ACTION [p=P|count=N] "
     "[after=N] [delay=MS] | fault disarm NAME",
     "list, arm and disarm fault points",
     "ACTION is fail, delay, crash or drop. p= fires with probability P\n"
     "(0..1) at each hit; count= fires on the next N hits, then disarms.\n"
     "Known points include store.commit and ws.write; a point is listed\n"
     "once it has been reached or armed."},
    {"config", "config get [KEY] | config set KEY VALUE",
     "read or change settings",
     "config get lists every setting, or shows one (KEY or SECTION.KEY).\n"
     "config set changes one of those marked runtime at once; the others\n"
     "are read at start only. Changes are not written to parley.conf."},
    {"log", "log level [LEVEL]", "show or set the log level",
     "LEVEL is debug, info, warn, error or off."},
    {"drain", "drain", "stop accepting; let clients move",
     "Stops every listener: no new connections, and connected clients get\n"
     "close 1001 (going away) so that they reconnect elsewhere. Reports\n"
     "the connections left until none are, or the shutdown grace ends.\n"
     "Only a restart accepts again."},
    {"shutdown", "shutdown", "stop the server in order",
     "Does what SIGTERM does: stops the listeners, lets connections close,\n"
     "stops the supervision tree and exits."},
    {"help", "help [COMMAND]", "the commands, or one in detail", ""},
    {NULL, NULL, NULL, NULL},
};

const chat_shell_help_t *chat_shell_help_find(const char *name)
{
    for (const chat_shell_help_t *h = chat_shell_help; h->name; h++)
        if (strcmp(h->name, name) == 0)
            return h;
    return NULL;
}
