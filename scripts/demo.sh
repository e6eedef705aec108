#!/usr/bin/env bash
# One-command demo of what hearken does today: installs what is missing,
# fetches the models (converting the speech model), builds, transcribes
# spoken commands (synthesized with espeak-ng) with the local whisper
# engine, turns the transcripts into catalog-validated commands with the
# local intent engine, then starts a private Mosquitto and the simulated
# devices of devices/home.toml, sends those commands and more in all three
# protocols, shows each acknowledgement and the events topic, refuses an
# invalid command, and verifies the audit log. The daemon that does all of
# this continuously arrives with the daemon issue; this script grows with it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --locked -p hearken -p hearken-whisper -p hearken-llama
hearken=${CARGO_TARGET_DIR:-target}/release/hearken
"$hearken" models fetch

work=$(mktemp -d)
chmod 755 "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n' "$port" > "$work/mosquitto.conf"
mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
"$mosquitto_bin" -c "$work/mosquitto.conf" 2>"$work/mosquitto.log" &
broker_pid=$!
cleanup() {
    kill "${sim_pid:-}" "${events_pid:-}" "$broker_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
broker="mqtt://127.0.0.1:$port"
echo "== broker $broker"

mosquitto_sub -p "$port" -t 'hearken/home/events' -v > "$work/events.txt" &
events_pid=$!
"$hearken" simulate --broker "$broker" --catalog devices/home.toml > "$work/simulator.txt" &
sim_pid=$!
for _ in $(seq 50); do grep -q ready "$work/simulator.txt" 2>/dev/null && break; sleep 0.1; done
echo "== simulated devices: $(head -1 "$work/simulator.txt")"

echo "== speech: spoken commands transcribed by the local whisper engine"
for text in "turn on the kitchen light" "lock the front door" "turn on the porch light and the ceiling fan"; do
    espeak-ng -v en -s 175 -w "$work/raw.wav" "$text"
    sox "$work/raw.wav" -r 16000 -c 1 -b 16 "$work/$(echo "$text" | tr ' ' _).wav"
done
"$hearken" transcribe "$work"/turn_on_the_kitchen_light.wav "$work"/lock_the_front_door.wav "$work"/turn_on_the_porch_light_and_the_ceiling_fan.wav | tee "$work/transcripts.jsonl"

echo "== intent: the transcripts turned into catalog-validated commands by the local intent engine"
python3 -c 'import json, sys; [print(json.loads(line)["text"]) for line in open(sys.argv[1])]' "$work/transcripts.jsonl" \
    | "$hearken" interpret --catalog devices/home.toml - | tee "$work/intents.jsonl"

audit="$work/audit.jsonl"
send() { "$hearken" send --broker "$broker" --catalog devices/home.toml --audit "$audit" "$@" || true; }
echo "== those commands sent, then more by hand (one JSON line each)"
python3 -c 'import json, sys
for line in open(sys.argv[1]):
    for c in json.loads(line).get("commands", []):
        print(c["device"], c["action"], c.get("value", ""))' "$work/intents.jsonl" > "$work/commands.txt"
while read -r device action value; do
    # shellcheck disable=SC2086 # the value is absent for value-less actions
    send "$device" "$action" $value
done < "$work/commands.txt"
send kitchen_light turn_on
send kitchen_light set_brightness 180
send living_room_blinds set_position 40
send porch_light turn_on
send ceiling_fan set_speed 2
send thermostat set_temperature 21
send front_door_lock lock
send tv set_volume 30
echo "== an invalid command is refused before anything is published"
send tv set_volume 150 2>&1 | sed 's/^/   /'
sleep 0.3
echo "== events topic hearken/home/events received $(wc -l < "$work/events.txt") events, e.g.:"
head -1 "$work/events.txt"
echo "== audit log verification"
"$hearken" audit verify "$audit"
