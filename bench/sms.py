"""SMS through the Twilio adapter (the real twilio SDK) against a local double of Twilio's API.

Measures sends per second with no rate limit (the adapter and the double share this process,
so the figure is a lower bound), and shows that with a limit of N/s the senders' shared rate
limiter (a token bucket in Redis) holds N/s, from the times the double received each request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time


from channels.base import Delivery, Message
from channels.twilio_sms import TwilioSMS
from bench.common import bench_redis, own_prefix
from dispatcher.connections import redis_client
from dispatcher.ratelimit import RateLimiter
from tests.doubles import served
from tests.doubles.twilio import TwilioDouble

SID, TOKEN = "AC" + "2" * 32, "bench-token"
MESSAGE = Message(alert_id="bench", event="暴雨", severity="Severe", urgency="Immediate", headline="暴雨橙色预警",
                  text="预计未来3小时有强降雨", instruction="请转移低洼地带群众", area="六指街道", drill=True)


def deliveries(n: int, offset: int = 0) -> list[Delivery]:
    return [Delivery(receipt_id=f"bench.{i}", channel="sms", address=f"+86139{i:08d}", recipient=f"p{i}",
                     name="测试", message=MESSAGE) for i in range(offset, offset + n)]


async def run(redis_url: str, prefix: str, total: int, concurrency: int, rate: float, rate_total: int) -> dict:
    double = TwilioDouble(SID, TOKEN)
    redis = redis_client(redis_url)
    async with served(double.app()) as url:
        sms = TwilioSMS(SID, TOKEN, from_="+15005550006", api_base=url)
        await sms.start()
        try:
            lanes = asyncio.Semaphore(concurrency)

            async def one(d: Delivery) -> None:
                async with lanes:
                    await sms.send(d)

            start = time.perf_counter()
            await asyncio.gather(*(one(d) for d in deliveries(total)))
            unlimited = total / (time.perf_counter() - start)

            double.received_at.clear()
            limiter = RateLimiter(redis, f"{prefix}:rate", rate)
            await limiter.take(int(limiter.capacity))  # start from an empty bucket: measure the steady rate

            # As the sender does: take the rate, then hand the send off, and take again.
            sends = []
            for d in deliveries(rate_total, offset=total):
                await limiter.take(1)
                sends.append(asyncio.create_task(one(d)))
            await asyncio.gather(*sends)
            stamps = double.received_at
            held = (len(stamps) - 1) / (stamps[-1] - stamps[0])
        finally:
            await sms.close()
            await redis.aclose()
    return {"unlimited": unlimited, "held": held}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.sms", description=__doc__)
    p.add_argument("--total", type=int, default=3000, help="messages for the unlimited run (default 3000)")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    p.add_argument("--rate", type=float, default=50, help="the limit to hold, per second (default 50)")
    p.add_argument("--rate-total", type=int, default=400, help="messages for the limited run (default 400)")
    p.add_argument("--redis-url", default=os.environ.get("SHAOZI_BENCH_REDIS_URL"))
    args = p.parse_args()
    with bench_redis(args.redis_url) as url, own_prefix(url) as prefix:
        r = asyncio.run(run(url, prefix, args.total, args.concurrency, args.rate, args.rate_total))
    print(f"Twilio SMS adapter (real SDK) against a local double, {args.concurrency} in flight:")
    print(f"  no limit: {r['unlimited']:,.0f} sends/s ({args.total} messages; the double shares this process)")
    print(f"  limit {args.rate:g}/s: held {r['held']:.1f}/s over {args.rate_total} messages")
    print(f"RESULT bench=sms sends_per_s={r['unlimited']:.0f} limit_per_s={args.rate:g} held_per_s={r['held']:.1f}")


if __name__ == "__main__":
    main()
