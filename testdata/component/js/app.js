// Burns CPU in named JavaScript functions, called from the export run.
function fib(n) {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

function mix(rounds) {
  let x = 1;
  for (let i = 0; i < rounds; i++) {
    x = (Math.imul(x, 1103515245) + 12345) | 0;
  }
  return x;
}

export function run() {
  return (fib(22) + mix(200000)) >>> 0;
}
