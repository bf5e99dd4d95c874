// Package systemd adapts announcementd to the service manager. Only cmd/announcementd imports it; the supervisor
// knows nothing of systemd (it calls Config.OnTransition and Config.OnFiles, answers Alive, and this package hangs
// on them). Without NOTIFY_SOCKET (not started by systemd, or by a unit that is not Type=notify) every call is a
// no-op.
//
// Notifier (notify.go) tells systemd what the supervisor does, from its state transitions (sd_notify(3); the state
// diagram is in docs/SUPERVISOR.md):
//
//	starting → serving (or restarting →       READY=1, STATUS=
//	serving, the first time one serves)
//	starting → serving after a take-over,     MAINPID=<this process>, READY=1, STATUS=, then BARRIER=1 and a wait
//	upgrading → serving (rolled back)         for systemd to have read it (the old main process exits after)
//	serving → reloading, serving → upgrading  RELOADING=1 and MONOTONIC_USEC= in one datagram (systemd 253+ needs
//	                                          both; 252 reads RELOADING=1), STATUS=
//	reloading/upgrading → serving,            READY=1, whatever the outcome: a reload that never sees READY hangs
//	  → restarting                            systemctl reload; STATUS= says the outcome and the reason
//	serving → restarting                      STATUS= (the worker crashed; restarting)
//	→ stopping                                STOPPING=1, STATUS=
//	upgrading → stopped (handed over)         nothing: the new supervisor speaks for the service now
//
// Watchdog (watchdog.go) sends WATCHDOG=1 at half of WATCHDOG_USEC while the supervisor is alive
// (supervisor.Alive): a hung supervisor stops the pings and systemd restarts the service. FDStore and Inherit
// (fdstore.go) keep the region's fd and the listeners in systemd's fd store and take them back, with socket-activated
// sockets, from LISTEN_FDS. JournalStream and NewJournalEncoder (journal.go) make logs that read well in the journal.
// WorkerEnv keeps the service manager's variables from the workers.
package systemd
