%% rtbench.erl - the BEAM side of Parley's runtime benchmarks.
%%
%% Each workload mirrors one in bench/rtbench.c message for message, so the
%% two columns of bench/run-runtime.sh measure the same work. Run one
%% workload per VM so that the peak resident size belongs to it alone:
%%
%%   erl -noshell +P 2000000 -pa <dir of rtbench.beam> \
%%       -s rtbench main <workload>
%%
%% Workloads: spawn ping-pong ring fan-out skynet supervisor. The result is
%% one JSON line on stdout; the exit status is 0 when the workload finished
%% and checked its result, 1 otherwise.
-module(rtbench).
-behaviour(supervisor).

-export([main/1, init/1, sup_child/2]).

-define(SPAWN_N, 1000000).
-define(PINGPONG_N, 2000000).
-define(RING_SIZE, 503).
-define(RING_HOPS, 10000000).
-define(FAN_SUBS, 512).
-define(FAN_ROUNDS, 20000).
-define(SKYNET_SIZE, 1000000).
-define(SKYNET_SUM, 499999500000).
-define(SUP_CHILDREN, 10000).
-define(SUP_CRASHES, 100000).
%% Crashes in flight at once, each on a different child.
-define(SUP_WINDOW, 100).
%% No workload may run longer than this; the VM halts with status 2.
-define(DEADLINE_MS, 600000).

main([Workload]) ->
    %% The supervisor workload crashes 100,000 children on purpose; a
    %% report for each would measure the logger, not the runtime.
    logger:set_primary_config(level, none),
    Name = atom_to_list(Workload),
    spawn(fun() -> watchdog(Name) end),
    Status =
        try run(Name) of
            Fields ->
                emit([{name, Name}, {impl, beam} | Fields]
                     ++ [{peak_rss_kb, status_kb("VmHWM")}]),
                0
        catch
            Class:Why:Stack ->
                io:format(standard_error, "rtbench ~s: ~p:~p~n~p~n",
                          [Name, Class, Why, Stack]),
                1
        end,
    halt(Status);
main(_) ->
    io:format(standard_error,
              "usage: rtbench spawn|ping-pong|ring|fan-out|skynet|"
              "supervisor~n", []),
    halt(1).

watchdog(Name) ->
    timer:sleep(?DEADLINE_MS),
    io:format(standard_error, "rtbench ~s: deadline passed~n", [Name]),
    halt(2).

run("spawn") -> spawn_bench();
run("ping-pong") -> pingpong_bench();
run("ring") -> ring_bench();
run("fan-out") -> fanout_bench();
run("skynet") -> skynet_bench();
run("supervisor") -> sup_bench();
run(Other) -> error({unknown_workload, Other}).

%% ---- measuring ---------------------------------------------------------

now_ns() ->
    erlang:monotonic_time(nanosecond).

seconds(T0, T1) ->
    (T1 - T0) / 1.0e9.

%% A field of /proc/self/status in kB. The VM is this OS process, so
%% "self" is the beam process itself.
status_kb(Field) ->
    {ok, Bin} = file:read_file("/proc/self/status"),
    Lines = string:split(binary_to_list(Bin), "\n", all),
    Prefix = Field ++ ":",
    [Line] = [L || L <- Lines, lists:prefix(Prefix, L)],
    [_, Kb | _] = string:lexemes(Line, " \t"),
    list_to_integer(Kb).

emit(Fields) ->
    Parts = [["\"", atom_to_list(K), "\":", json_value(V)]
             || {K, V} <- Fields],
    io:format("{~s}~n", [lists:join(",", Parts)]).

json_value(V) when is_integer(V) -> integer_to_list(V);
json_value(V) when is_float(V) -> float_to_list(V, [{decimals, 6}]);
json_value(V) when is_atom(V) -> ["\"", atom_to_list(V), "\""];
json_value(V) when is_list(V) -> ["\"", V, "\""].

%% ---- 1. spawn: a million idle actors, then one message each ------------

spawn_bench() ->
    Self = self(),
    erlang:garbage_collect(),
    Rss0 = status_kb("VmRSS"),
    T0 = now_ns(),
    Pids = spawn_waiters(?SPAWN_N, []),
    T1 = now_ns(),
    %% The list of pids (16 bytes an actor) stays in the delta; the C
    %% driver writes its id array before its baseline, so this side is
    %% charged up to 16 bytes an actor that the other is not.
    erlang:garbage_collect(),
    Rss1 = status_kb("VmRSS"),
    T2 = now_ns(),
    lists:foreach(fun(P) -> P ! {go, Self} end, Pids),
    collect(?SPAWN_N),
    T3 = now_ns(),
    SpawnS = seconds(T0, T1),
    ReplyS = seconds(T2, T3),
    [{seconds, SpawnS}, {rate, ?SPAWN_N / SpawnS},
     {bytes_per_actor, (Rss1 - Rss0) * 1024 div ?SPAWN_N},
     {reply_seconds, ReplyS}, {reply_rate, ?SPAWN_N / ReplyS}].

spawn_waiters(0, Acc) -> Acc;
spawn_waiters(N, Acc) -> spawn_waiters(N - 1, [spawn(fun waiter/0) | Acc]).

waiter() ->
    receive {go, Collector} -> Collector ! done end.

collect(0) -> ok;
collect(N) -> receive done -> collect(N - 1) end.

%% ---- 2. ping-pong: two actors, round trips -----------------------------

pingpong_bench() ->
    Self = self(),
    Pong = spawn(fun pong/0),
    T0 = now_ns(),
    spawn(fun() -> ping(Pong, ?PINGPONG_N), Self ! done end),
    receive done -> ok end,
    T1 = now_ns(),
    Pong ! stop,
    S = seconds(T0, T1),
    [{seconds, S}, {rate, ?PINGPONG_N / S}].

ping(_Pong, 0) -> ok;
ping(Pong, N) ->
    Pong ! {ping, self()},
    receive pong -> ping(Pong, N - 1) end.

pong() ->
    receive
        {ping, From} -> From ! pong, pong();
        stop -> ok
    end.

%% ---- 3. ring: a token passed round 503 actors --------------------------

ring_bench() ->
    Self = self(),
    Members = [spawn(fun ring_member/0) || _ <- lists:seq(1, ?RING_SIZE)],
    Nexts = tl(Members) ++ [hd(Members)],
    lists:foreach(fun({M, N}) -> M ! {next, N} end,
                  lists:zip(Members, Nexts)),
    T0 = now_ns(),
    hd(Members) ! {token, ?RING_HOPS, Self},
    receive ring_done -> ok end,
    T1 = now_ns(),
    lists:foreach(fun(M) -> exit(M, kill) end, Members),
    S = seconds(T0, T1),
    [{seconds, S}, {rate, ?RING_HOPS / S}].

ring_member() ->
    receive {next, Next} -> ring_loop(Next) end.

%% The token carries the hops still to make; the member that receives it
%% with none left tells the driver.
ring_loop(Next) ->
    receive
        {token, 0, Driver} ->
            Driver ! ring_done,
            ring_loop(Next);
        {token, N, Driver} ->
            Next ! {token, N - 1, Driver},
            ring_loop(Next)
    end.

%% ---- 4. fan-out: one sender, 512 subscribers, acks to a collector ------

%% Pipelined without flow control: the sender issues all rounds back to
%% back and never waits for acks, so the subscribers' and the collector's
%% queues grow as far as the scheduling lets them. The peak resident size
%% shows that backlog.
fanout_bench() ->
    Self = self(),
    Total = ?FAN_SUBS * ?FAN_ROUNDS,
    Collector = spawn(fun() -> fan_collect(Total), Self ! fan_done end),
    Subs = [spawn(fun() -> fan_sub(Collector) end)
            || _ <- lists:seq(1, ?FAN_SUBS)],
    T0 = now_ns(),
    spawn(fun() -> fan_send(Subs, ?FAN_ROUNDS) end),
    receive fan_done -> ok end,
    T1 = now_ns(),
    lists:foreach(fun(P) -> exit(P, kill) end, Subs),
    S = seconds(T0, T1),
    [{seconds, S}, {rate, Total / S}, {deliveries, Total}].

fan_send(_Subs, 0) -> ok;
fan_send(Subs, Round) ->
    lists:foreach(fun(P) -> P ! {msg, Round} end, Subs),
    fan_send(Subs, Round - 1).

fan_sub(Collector) ->
    receive {msg, _Round} -> Collector ! ack end,
    fan_sub(Collector).

fan_collect(0) -> ok;
fan_collect(N) -> receive ack -> fan_collect(N - 1) end.

%% ---- 5. skynet: a ten-way tree of a million leaves ---------------------

skynet_bench() ->
    Self = self(),
    T0 = now_ns(),
    spawn(fun() -> skynet(0, ?SKYNET_SIZE, Self) end),
    Sum = receive {sum, V} -> V end,
    T1 = now_ns(),
    Sum =:= ?SKYNET_SUM orelse error({wrong_sum, Sum}),
    S = seconds(T0, T1),
    Actors = skynet_actors(?SKYNET_SIZE),
    [{seconds, S}, {rate, Actors / S}, {actors, Actors}, {result, Sum}].

skynet(Num, 1, Parent) ->
    Parent ! {sum, Num};
skynet(Num, Size, Parent) ->
    Self = self(),
    Step = Size div 10,
    [spawn(fun() -> skynet(Num + I * Step, Step, Self) end)
     || I <- lists:seq(0, 9)],
    Parent ! {sum, skynet_sum(10, 0)}.

skynet_sum(0, Acc) -> Acc;
skynet_sum(N, Acc) -> receive {sum, V} -> skynet_sum(N - 1, Acc + V) end.

skynet_actors(1) -> 1;
skynet_actors(Size) -> 1 + 10 * skynet_actors(Size div 10).

%% ---- 6. supervisor: restarts under one_for_one -------------------------

%% The driver crashes children round-robin, keeping SUP_WINDOW crashes in
%% flight (each on a different child), and counts the restarts it hears
%% of: every start of a child reports {started, Index, Pid} to the driver.
sup_bench() ->
    Self = self(),
    {ok, Sup} = supervisor:start_link(?MODULE, {sup, Self}),
    Pids = sup_await_starts(?SUP_CHILDREN, #{}),
    T0 = now_ns(),
    Window = min(?SUP_WINDOW, ?SUP_CRASHES),
    Pids1 = lists:foldl(fun(I, Acc) -> sup_crash(I, Acc) end, Pids,
                        lists:seq(0, Window - 1)),
    sup_loop(Window, Window, Pids1),
    T1 = now_ns(),
    unlink(Sup),
    exit(Sup, kill),
    S = seconds(T0, T1),
    [{seconds, S}, {rate, ?SUP_CRASHES / S}, {restarts, ?SUP_CRASHES},
     {children, ?SUP_CHILDREN}].

sup_await_starts(0, Pids) -> Pids;
sup_await_starts(N, Pids) ->
    receive {started, I, Pid} -> sup_await_starts(N - 1, Pids#{I => Pid}) end.

sup_crash(Crash, Pids) ->
    I = Crash rem ?SUP_CHILDREN,
    maps:get(I, Pids) ! crash,
    Pids.

%% Sent: crashes issued so far; InFlight: crashes not yet restarted.
sup_loop(_Sent, 0, _Pids) -> ok;
sup_loop(Sent, InFlight, Pids) ->
    receive
        {started, I, Pid} ->
            Pids1 = Pids#{I => Pid},
            case Sent < ?SUP_CRASHES of
                true ->
                    sup_loop(Sent + 1, InFlight, sup_crash(Sent, Pids1));
                false ->
                    sup_loop(Sent, InFlight - 1, Pids1)
            end
    end.

%% An intensity above the total of crashes: the limit never trips.
init({sup, Driver}) ->
    Flags = #{strategy => one_for_one,
              intensity => 10 * ?SUP_CRASHES,
              period => 1},
    Children = [#{id => I,
                  start => {?MODULE, sup_child, [I, Driver]},
                  restart => permanent,
                  shutdown => brutal_kill,
                  type => worker}
                || I <- lists:seq(0, ?SUP_CHILDREN - 1)],
    {ok, {Flags, Children}}.

sup_child(Index, Driver) ->
    Pid = spawn_link(fun() ->
                             Driver ! {started, Index, self()},
                             receive crash -> exit(crash) end
                     end),
    {ok, Pid}.
