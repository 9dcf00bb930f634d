// Integer money, as the bridge keeps it (otc_bridge/money.py): micro-RTC (10^6 per RTC),
// nano-quote per RTC for prices (10^9 per ETH/USDC/ERG), nano-quote totals, and the quote
// asset's own base units for what the buyer locks on chain. All arithmetic is BigInt;
// decimal strings are parsed by hand and over-precise input is refused, never rounded,
// exactly like the API (so the page never signs an amount the person did not type).

export const RTC_DECIMALS = 6;
export const PRICE_DECIMALS = 9;
export const MIN_ORDER_MICRO_RTC = 100_000n; // 0.1 RTC
export const MAX_ORDER_MICRO_RTC = 10_000_000_000n; // 10,000 RTC, the node's reward cap
export const MAX_PRICE_NANO = 1_000_000_000_000n; // 1000 quote per RTC

const PLAIN_DECIMAL = /^[0-9]+(\.[0-9]+)?$/;

export class MoneyInputError extends Error {}

/**
 * Parse a decimal string ("12.5") into integer units of 10^-decimals.
 * Throws MoneyInputError with a sentence fit to show next to the field.
 */
export function parseUnits(text, decimals, what) {
  let value = String(text ?? '').trim();
  if (value.startsWith('.')) value = `0${value}`; // ".5" is a friendly way to write 0.5
  if (value === '') throw new MoneyInputError(`Enter ${what}.`);
  if (!PLAIN_DECIMAL.test(value)) {
    throw new MoneyInputError(`${capital(what)} must be a plain decimal number like 12.5 (digits and one dot).`);
  }
  const [whole, fraction = ''] = value.split('.');
  const trimmed = fraction.replace(/0+$/, ''); // trailing zeros are exact, not precision
  if (trimmed.length > decimals) {
    throw new MoneyInputError(`${capital(what)} has more than ${decimals} decimal places; the bridge refuses to round.`);
  }
  return BigInt(whole) * 10n ** BigInt(decimals) + BigInt(trimmed.padEnd(decimals, '0') || '0');
}

/** Exact decimal string of integer ``units`` (BigInt, number or digit string). */
export function formatUnits(units, decimals) {
  const n = BigInt(units);
  const sign = n < 0n ? '-' : '';
  const digits = (n < 0n ? -n : n).toString().padStart(decimals + 1, '0');
  const whole = digits.slice(0, digits.length - decimals);
  const fraction = digits.slice(digits.length - decimals).replace(/0+$/, '');
  return sign + groupThousands(whole) + (fraction ? `.${fraction}` : '');
}

function groupThousands(whole) {
  return whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

export const formatRtc = (micro) => `${formatUnits(micro, RTC_DECIMALS)} RTC`;
export const formatQuote = (nano, symbol) => `${formatUnits(nano, PRICE_DECIMALS)} ${symbol}`;

const ceilDiv = (a, b) => (a + b - 1n) / b;

/** Total in nano-quote, rounded up (the seller never gets less than the price). */
export function totalQuoteNano(amountMicro, priceNano) {
  return ceilDiv(BigInt(amountMicro) * BigInt(priceNano), 10n ** BigInt(RTC_DECIMALS));
}

/** Total in the quote asset's smallest unit (wei, USDC 6 dp, nanoERG), rounded up. */
export function totalQuoteBaseUnits(amountMicro, priceNano, quoteDecimals) {
  const numerator = BigInt(amountMicro) * BigInt(priceNano) * 10n ** BigInt(quoteDecimals);
  return ceilDiv(numerator, 10n ** BigInt(RTC_DECIMALS + PRICE_DECIMALS));
}

/**
 * The escrow node's 5 % platform fee on a job reward, in micro-RTC. The node computes
 * int(reward * 0.05) with a binary float and truncation; we reproduce that rule exactly
 * (a reward of at most 10^10 micro-RTC is exact in a double, and JS and Python doubles
 * multiply identically), because the page must show what the node will really take.
 */
export function nodeFeeMicro(rewardMicro) {
  return BigInt(Math.trunc(Number(rewardMicro) * 0.05));
}

/** What the RTC seller's balance must cover: reward + the node's fee. */
export const escrowMicro = (rewardMicro) => BigInt(rewardMicro) + nodeFeeMicro(rewardMicro);

/** Check the API's limits; returns null or the sentence to show (the API's own wording). */
export function amountProblem(micro) {
  if (micro < MIN_ORDER_MICRO_RTC) return 'Minimum order: 0.1 RTC';
  if (micro > MAX_ORDER_MICRO_RTC) return 'Maximum order: 10000 RTC (the escrow node\'s reward cap)';
  return null;
}

export function priceProblem(nano) {
  if (nano <= 0n) return 'price_per_rtc must be positive';
  if (nano > MAX_PRICE_NANO) return 'price_per_rtc too high (max 1000)';
  return null;
}

/** Base units as a readable decimal of the asset ("500000" USDC units -> "0.5"). */
export const baseUnitsAsDecimal = (units, decimals) => formatUnits(units, decimals);

function capital(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
