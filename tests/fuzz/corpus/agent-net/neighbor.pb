

10.202.0.932eth0aa:bb:cc:dd:ee:ff €